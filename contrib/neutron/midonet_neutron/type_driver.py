"""The "midonet" network type: a network of the cluster's overlay.

A midonet network has no segmentation id and no physical network: the
cluster's bridges carry it over VXLAN between the hosts' agents.
"""

from neutron_lib import exceptions as n_exc
from neutron_lib.plugins.ml2 import api

TYPE_MIDONET = 'midonet'


class MidonetTypeDriver(api.ML2TypeDriver):

    def initialize(self):
        pass

    def initialize_network_segment_range_support(self):
        pass

    def update_network_segment_range_allocations(self):
        pass

    def get_type(self):
        return TYPE_MIDONET

    def is_partial_segment(self, segment):
        return False

    def validate_provider_segment(self, segment):
        for key, value in segment.items():
            if value and key != api.NETWORK_TYPE:
                raise n_exc.InvalidInput(
                    error_message='%s cannot be set on a midonet network: '
                                  'the cluster chooses its own overlay '
                                  'keys' % key)

    def reserve_provider_segment(self, context, segment, filters=None):
        return segment

    def allocate_tenant_segment(self, context, filters=None):
        return {api.NETWORK_TYPE: TYPE_MIDONET}

    def release_segment(self, context, segment):
        pass

    def get_mtu(self, physical_network=None):
        return 0
