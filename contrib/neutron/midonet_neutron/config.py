"""The [MIDONET] options of neutron.conf."""

from oslo_config import cfg

GROUP = 'MIDONET'

OPTS = [
    cfg.StrOpt('midonet_uri', default='http://127.0.0.1:8181/midonet-api',
               help='Base URL of the midonet cluster REST API.'),
    cfg.StrOpt('username', default='admin',
               help='User to log in to the cluster as (POST /login).'),
    cfg.StrOpt('password', secret=True, default='',
               help='Password of that user.'),
    cfg.StrOpt('project_id', default='admin',
               help='Project (tenant) to log in to (X-Auth-Project).'),
    cfg.StrOpt('token', secret=True, default='',
               help='A token to send instead of logging in.'),
    cfg.StrOpt('ca_file', default='',
               help='CA certificate that signed the cluster API\'s TLS '
                    'certificate (https midonet_uri).'),
    cfg.IntOpt('timeout', default=30,
               help='Seconds to wait for the cluster to answer a call.'),
]

cfg.CONF.register_opts(OPTS, GROUP)


def list_opts():
    return [(GROUP, OPTS)]
