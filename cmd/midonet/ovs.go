package main

import (
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/ovs"
)

func init() {
	openOVS = func() (datapath.Datapath, error) {
		if err := ovs.Available(); err != nil {
			return nil, err
		}
		return ovs.Open(ovs.Config{})
	}
}
