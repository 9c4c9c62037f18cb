// Command midonet is MidoNet's one binary: `midonet cluster` runs the store
// and the REST API, `midonet agent` the per-host agent, `midonet sandbox` a
// whole demo cloud on one machine, and the other verbs are the command-line
// client of the REST API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "midonet",
		Short:         "MidoNet: network virtualization for clouds",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(clusterCommand(), agentCommand(), sandboxCommand(), bgpSpeakerCommand())
	registerCLI(root)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "midonet:", err)
		os.Exit(1)
	}
}
