"""Neutron plugin for the midonet cluster (github.com/midonet/midonet).

An ML2 mechanism driver, an ML2 type driver and an L3 service plugin for
Debian 12's neutron-server (Zed) that send every network, subnet, port,
router, router interface, floating IP, security group and rule to the
cluster's Neutron endpoints (<api>/neutron/...) once Neutron has stored it,
as networking-midonet's v2 plugin did. The cluster translates them into its
virtual topology; agents plug the ports bound to their host.
"""
