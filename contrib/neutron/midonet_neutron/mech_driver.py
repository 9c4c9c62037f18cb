"""The ML2 mechanism driver: networks, subnets and ports to the cluster.

Each postcommit hook sends the object Neutron committed to the cluster's
Neutron endpoints; a refusal fails the call, and ML2 then deletes what it
created. Port binding binds midonet segments with the tap VIF type: the
cluster binds the port to binding:host_id and the interface named in
binding:profile (interface_name), or Nova's tap<port id prefix>, and that
host's agent plugs it.
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib import constants as n_const
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

from midonet_neutron import client
from midonet_neutron import config  # noqa: F401 -- registers [MIDONET]
from midonet_neutron import errors
from midonet_neutron import type_driver

LOG = logging.getLogger(__name__)

# The network types whose segments this driver binds: midonet, and the
# types a deployment may name its tenant networks with.
BINDABLE = (type_driver.TYPE_MIDONET, n_const.TYPE_LOCAL, n_const.TYPE_VXLAN)


class MidonetMechanismDriver(api.MechanismDriver):

    def initialize(self):
        self.client = client.from_conf(cfg.CONF.MIDONET)
        self.vif_details = {portbindings.CAP_PORT_FILTER: True,
                            portbindings.VIF_DETAILS_CONNECTIVITY:
                                portbindings.CONNECTIVITY_L2}
        SecurityGroupHandler(self.client)
        LOG.info('midonet mechanism driver: cluster at %s',
                 cfg.CONF.MIDONET.midonet_uri)

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def _send(self, fn, *args):
        errors.call(fn, *args)

    # Networks.
    def create_network_postcommit(self, context):
        self._send(self.client.create, 'networks', context.current)

    def update_network_postcommit(self, context):
        self._send(self.client.update, 'networks', context.current['id'],
                   context.current)

    def delete_network_postcommit(self, context):
        self._send(self.client.delete, 'networks', context.current['id'])

    # Subnets.
    def create_subnet_postcommit(self, context):
        self._send(self.client.create, 'subnets', context.current)

    def update_subnet_postcommit(self, context):
        self._send(self.client.update, 'subnets', context.current['id'],
                   context.current)

    def delete_subnet_postcommit(self, context):
        self._send(self.client.delete, 'subnets', context.current['id'])

    # Ports.
    def create_port_postcommit(self, context):
        port = context.current
        if (port.get('device_owner') == n_const.DEVICE_OWNER_ROUTER_GW and
                not port.get('fixed_ips')):
            raise errors.ClusterBadRequest(
                resource='router', msg='router %s: its gateway port has no '
                'IP address' % port.get('device_id'))
        self._send(self.client.create, 'ports', port)

    def update_port_postcommit(self, context):
        self._send(self.client.update, 'ports', context.current['id'],
                   context.current)

    def delete_port_postcommit(self, context):
        self._send(self.client.delete, 'ports', context.current['id'])

    def bind_port(self, context):
        vnic = context.current.get(portbindings.VNIC_TYPE,
                                   portbindings.VNIC_NORMAL)
        if vnic != portbindings.VNIC_NORMAL:
            LOG.debug('midonet: port %s has VNIC type %s; only normal '
                      'ports are plugged by the agents',
                      context.current['id'], vnic)
            return
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in BINDABLE:
                context.set_binding(segment[api.ID], portbindings.VIF_TYPE_TAP,
                                    self.vif_details,
                                    n_const.PORT_STATUS_ACTIVE)
                return
        LOG.debug('midonet: no segment of port %s to bind',
                  context.current['id'])


class SecurityGroupHandler(object):
    """Sends security groups and rules to the cluster.

    Creations go in the precommit phase, so that a group or rule the
    cluster refuses (an IPv6 prefix, say) is refused to the user and rolled
    back; deletions and renames once Neutron committed them.
    """

    def __init__(self, c):
        self.client = c
        for event, fn in (
                (events.PRECOMMIT_CREATE, self.create_group),
                (events.AFTER_UPDATE, self.update_group),
                (events.AFTER_DELETE, self.delete_group)):
            registry.subscribe(fn, resources.SECURITY_GROUP, event)
        for event, fn in (
                (events.PRECOMMIT_CREATE, self.create_rule),
                (events.AFTER_DELETE, self.delete_rule)):
            registry.subscribe(fn, resources.SECURITY_GROUP_RULE, event)

    def create_group(self, resource, event, trigger, payload):
        errors.call(self.client.create, 'security_groups',
                    payload.latest_state)

    def update_group(self, resource, event, trigger, payload):
        sg = dict(payload.latest_state)
        sg.pop('security_group_rules', None)
        errors.call(self.client.update, 'security_groups', sg['id'], sg)

    def delete_group(self, resource, event, trigger, payload):
        try:
            self.client.delete('security_groups', payload.resource_id)
        except Exception:
            LOG.exception('midonet: deleting security group %s',
                          payload.resource_id)

    def create_rule(self, resource, event, trigger, payload):
        errors.call(self.client.create, 'security_group_rules',
                    payload.latest_state)

    def delete_rule(self, resource, event, trigger, payload):
        try:
            self.client.delete('security_group_rules', payload.resource_id)
        except Exception:
            LOG.exception('midonet: deleting security group rule %s',
                          payload.resource_id)
