package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/services/bgp"
	"github.com/midonet/midonet/internal/services/bgp/speaker"
)

// bgpSpeakerCommand is the speaker process an agent starts inside an
// uplink port's namespace (package bgp): it reads its configuration on
// standard input and reports on standard output. Not for people.
func bgpSpeakerCommand() *cobra.Command {
	var logLevel string
	cmd := &cobra.Command{
		Use:    bgp.SpeakerCommandName,
		Short:  "Run one uplink port's BGP speaker (started by the agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return speaker.Main(cmd.Context(), os.Stdin, os.Stdout, newLogger(logLevel))
		},
	}
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
