package ovs

// Numbers from the kernel's include/uapi/linux/openvswitch.h (ABI, stable).

// Generic netlink family names.
const (
	familyDatapath = "ovs_datapath"
	familyVport    = "ovs_vport"
	familyFlow     = "ovs_flow"
	familyPacket   = "ovs_packet"
	familyMeter    = "ovs_meter"
)

// Family versions sent in the genl header.
const (
	versionDatapath = 2
	versionVport    = 1
	versionFlow     = 1
	versionPacket   = 1
	versionMeter    = 1
)

// OVS_METER_CMD_*, OVS_METER_ATTR_*, OVS_BAND_ATTR_* and band types.
const (
	meterCmdSet = 2
	meterCmdDel = 3

	meterAttrID    = 1
	meterAttrKBPS  = 2
	meterAttrBands = 4

	bandAttrType  = 1
	bandAttrRate  = 2
	bandAttrBurst = 3

	bandTypeDrop = 1
)

// Commands shared by the datapath, vport and flow families.
const (
	cmdNew = 1
	cmdDel = 2
	cmdGet = 3
	cmdSet = 4
)

// Packet family commands.
const (
	cmdPacketMiss    = 1
	cmdPacketAction  = 2
	cmdPacketExecute = 3
)

// OVS_DP_ATTR_*.
const (
	dpAttrName           = 1
	dpAttrUpcallPID      = 2
	dpAttrStats          = 3
	dpAttrMegaflowStats  = 4
	dpAttrUserFeatures   = 5
	dpAttrMasksCacheSize = 7
)

// OVS_DP_F_* user features.
const (
	dpFeatureUnaligned = 1 << 0
	dpFeatureVportPIDs = 1 << 1
)

// OVS_VPORT_ATTR_* and vport types.
const (
	vportAttrPortNo    = 1
	vportAttrType      = 2
	vportAttrName      = 3
	vportAttrOptions   = 4
	vportAttrUpcallPID = 5
	vportAttrStats     = 6
	vportAttrIfindex   = 8

	vportTypeNetdev   = 1
	vportTypeInternal = 2
	vportTypeGRE      = 3
	vportTypeVXLAN    = 4
	vportTypeGeneve   = 5

	tunnelAttrDstPort = 1 // OVS_TUNNEL_ATTR_DST_PORT, u16 in vport options
)

// OVS_FLOW_ATTR_*.
const (
	flowAttrKey      = 1
	flowAttrActions  = 2
	flowAttrStats    = 3
	flowAttrTCPFlags = 4
	flowAttrUsed     = 5
	flowAttrClear    = 6
	flowAttrMask     = 7
)

// OVS_PACKET_ATTR_*.
const (
	packetAttrPacket       = 1
	packetAttrKey          = 2
	packetAttrActions      = 3
	packetAttrUserdata     = 4
	packetAttrEgressTunKey = 5
	packetAttrProbe        = 8
	packetAttrMRU          = 9
	packetAttrLen          = 10
	packetAttrHash         = 11
)

// OVS_KEY_ATTR_*.
const (
	keyAttrEncap     = 1
	keyAttrPriority  = 2
	keyAttrInPort    = 3
	keyAttrEthernet  = 4
	keyAttrVLAN      = 5
	keyAttrEthertype = 6
	keyAttrIPv4      = 7
	keyAttrIPv6      = 8
	keyAttrTCP       = 9
	keyAttrUDP       = 10
	keyAttrICMP      = 11
	keyAttrICMPv6    = 12
	keyAttrARP       = 13
	keyAttrND        = 14
	keyAttrSkbMark   = 15
	keyAttrTunnel    = 16
	keyAttrSCTP      = 17
	keyAttrTCPFlags  = 18
)

// OVS_TUNNEL_KEY_ATTR_*.
const (
	tunAttrID      = 0
	tunAttrIPv4Src = 1
	tunAttrIPv4Dst = 2
	tunAttrTOS     = 3
	tunAttrTTL     = 4
	tunAttrDF      = 5
	tunAttrCsum    = 6
	tunAttrTPSrc   = 9
	tunAttrTPDst   = 10
)

// OVS_ACTION_ATTR_*.
const (
	actAttrOutput    = 1
	actAttrUserspace = 2
	actAttrSet       = 3
	actAttrPushVLAN  = 4
	actAttrPopVLAN   = 5
	actAttrSetMasked = 11
	actAttrMeter     = 19
)

// OVS_USERSPACE_ATTR_*.
const (
	userspaceAttrPID      = 1
	userspaceAttrUserdata = 2
)

// Ethertypes and IP protocols the key codec distinguishes.
const (
	ethTypeIPv4  = 0x0800
	ethTypeARP   = 0x0806
	ethTypeRARP  = 0x8035
	ethTypeVLAN  = 0x8100
	ethTypeQinQ  = 0x88a8
	ethTypeIPv6  = 0x86dd
	ethTypeMin   = 0x0600 // smaller values are 802.3 lengths
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoICMPv6  = 58
	protoSCTP    = 132
	dpMaxPorts   = 0xffff // in_port value of a key without an input port
	ovspLocal    = 0      // the datapath's own internal port
	vlanCFI      = 0x1000
	tunnelDefTTL = 64
)

// Sizes of the fixed headers in every OVS message.
const (
	nlmsgHdrLen = 16
	genlHdrLen  = 4
	ovsHdrLen   = 4
	msgHdrLen   = nlmsgHdrLen + genlHdrLen + ovsHdrLen
)
