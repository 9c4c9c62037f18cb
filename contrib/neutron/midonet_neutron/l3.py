"""The L3 service plugin: routers, their interfaces and floating IPs.

Neutron's own L3 database code does the bookkeeping (gateway ports,
interface ports, floating IP ports, through the core plugin and so through
the mechanism driver); once it has committed, the router, the interface
or the floating IP goes to the cluster. A refusal undoes what Neutron did
and reaches the user with the cluster's message.
"""

from neutron.db import extraroute_db
from neutron.db import l3_gwmode_db
# The core plugin's port queries name Port.port_forwardings, a relation
# this model defines (Neutron's own L3 plugin loads it the same way).
from neutron.db.models import port_forwarding  # noqa: F401
from neutron_lib.api.definitions import extraroute
from neutron_lib.api.definitions import l3 as l3_apidef
from neutron_lib.api.definitions import l3_ext_gw_mode
from neutron_lib import constants as n_const
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.services import base as service_base
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import excutils

from midonet_neutron import client
from midonet_neutron import config  # noqa: F401 -- registers [MIDONET]
from midonet_neutron import errors

LOG = logging.getLogger(__name__)


class MidonetL3Plugin(service_base.ServicePluginBase,
                      extraroute_db.ExtraRoute_dbonly_mixin,
                      l3_gwmode_db.L3_NAT_dbonly_mixin):

    supported_extension_aliases = [l3_apidef.ALIAS, extraroute.ALIAS,
                                   l3_ext_gw_mode.ALIAS]

    __native_pagination_support = True
    __native_sorting_support = True

    def __init__(self):
        super().__init__()
        self.client = client.from_conf(cfg.CONF.MIDONET)

    @classmethod
    def get_plugin_type(cls):
        return plugin_constants.L3

    def get_plugin_description(self):
        return 'L3 routing through the midonet cluster'

    def create_router(self, context, router):
        r = super().create_router(context, router)
        try:
            errors.call(self.client.create, 'routers', r)
        except Exception:
            with excutils.save_and_reraise_exception():
                try:
                    super().delete_router(context, r['id'])
                except Exception:
                    LOG.exception('midonet: undoing router %s', r['id'])
        return r

    def update_router(self, context, id, router):
        r = super().update_router(context, id, router)
        errors.call(self.client.update, 'routers', id, r)
        return r

    def delete_router(self, context, id):
        super().delete_router(context, id)
        errors.call(self.client.delete, 'routers', id)

    def add_router_interface(self, context, router_id, interface_info):
        by_port = bool(interface_info and interface_info.get('port_id'))
        info = super().add_router_interface(context, router_id,
                                            interface_info)
        try:
            errors.call(self.client.router_interface, 'add', router_id, info)
        except Exception:
            with excutils.save_and_reraise_exception():
                if not by_port:
                    try:
                        super().remove_router_interface(context, router_id,
                                                        info)
                    except Exception:
                        LOG.exception('midonet: undoing interface %s', info)
        return info

    def remove_router_interface(self, context, router_id, interface_info):
        info = super().remove_router_interface(context, router_id,
                                               interface_info)
        errors.call(self.client.router_interface, 'remove', router_id, info)
        return info

    def create_floatingip(self, context, floatingip,
                          initial_status=n_const.FLOATINGIP_STATUS_ACTIVE):
        fip = super().create_floatingip(context, floatingip, initial_status)
        try:
            errors.call(self.client.create, 'floating_ips', fip)
        except Exception:
            with excutils.save_and_reraise_exception():
                try:
                    super().delete_floatingip(context, fip['id'])
                except Exception:
                    LOG.exception('midonet: undoing floating IP %s',
                                  fip['id'])
        return fip

    def update_floatingip(self, context, id, floatingip):
        fip = super().update_floatingip(context, id, floatingip)
        status = (n_const.FLOATINGIP_STATUS_ACTIVE if fip.get('port_id')
                  else n_const.FLOATINGIP_STATUS_DOWN)
        try:
            errors.call(self.client.update, 'floating_ips', id, fip)
        except Exception:
            with excutils.save_and_reraise_exception():
                self.update_floatingip_status(
                    context, id, n_const.FLOATINGIP_STATUS_ERROR)
        self.update_floatingip_status(context, id, status)
        fip['status'] = status
        return fip

    def delete_floatingip(self, context, id):
        super().delete_floatingip(context, id)
        errors.call(self.client.delete, 'floating_ips', id)
