"""The cluster's refusals as the Neutron API errors users see."""

from neutron_lib import exceptions as n_exc

from midonet_neutron import client


class ClusterBadRequest(n_exc.BadRequest):
    message = 'midonet cluster: %(msg)s'


class ClusterNotFound(n_exc.NotFound):
    message = 'midonet cluster: %(msg)s'


class ClusterConflict(n_exc.Conflict):
    message = 'midonet cluster: %(msg)s'


class ClusterNotSupported(NotImplementedError):
    """Neutron answers 501 with this message."""


class ClusterUnavailable(n_exc.ServiceUnavailable):
    message = 'midonet cluster: %(msg)s'


def convert(e):
    """Returns the Neutron exception for a client error (or e itself)."""
    if not isinstance(e, client.ClusterError):
        return ClusterUnavailable(msg=str(e))
    msg = '%s (%s %s)' % (e.message, e.method, e.url)
    if e.status == 400:
        return ClusterBadRequest(resource='midonet', msg=msg)
    if e.status == 404:
        return ClusterNotFound(msg=msg)
    if e.status == 409:
        return ClusterConflict(msg=msg)
    if e.status == 501:
        return ClusterNotSupported('midonet cluster: ' + msg)
    return ClusterUnavailable(msg='%s %s' % (e.status, msg))


def call(fn, *args):
    """Runs a client call, raising the Neutron error for a failure."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: B902 -- every failure reaches the user
        raise convert(e) from e
