package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/sandbox"
)

func sandboxCommand() *cobra.Command {
	var cfg sandbox.Config
	var check bool
	var logLevel string
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a whole MidoNet cloud on this machine (as root) and check it with real traffic",
		Long: `Starts an embedded cluster, three agents in three host namespaces joined by an
underlay bridge, VMs as namespaces, and an external network; builds a demo with two
tenant networks on a router, a provider router with an uplink, SNAT, a floating IP and
a security group; checks connectivity with real packets and prints a table.

It keeps running with the REST API on --listen until Ctrl-C; explore with the CLI:
  midonet bridge list
  midonet trace --port <port id> --src-ip 10.0.1.10 --dst-ip 10.0.2.11
With --check it exits after the checks with their status. It cleans up what it
created, and what a crashed earlier run left.`,
		Example: "  sudo midonet sandbox\n  sudo midonet sandbox --check",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Logger = newLogger(logLevel)
			cfg.Out = os.Stdout
			sb, err := sandbox.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer func() {
				fmt.Println("==> cleaning up")
				sb.Close()
			}()
			failed := sandbox.PrintTable(os.Stdout, sb.RunChecks(cmd.Context()))
			if check {
				if failed > 0 {
					return fmt.Errorf("%d checks failed", failed)
				}
				return nil
			}
			fmt.Printf("\nThe sandbox is running. Web console: %s\n", sb.ConsoleURL())
			fmt.Printf("REST API: %s\n", sb.APIURL())
			fmt.Printf("Try: midonet --api %s router list\n", sb.APIURL())
			fmt.Println("     ip netns exec mnsb-vm-a1 ping 10.0.2.11")
			fmt.Println("Ctrl-C stops it and cleans up.")
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&check, "check", false, "run the checks and exit with their status")
	f.StringVar(&cfg.Listen, "listen", ":8181", "address of the REST API")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the store and the agents' state and logs (default: a temporary one)")
	f.StringVar(&cfg.Datapath, "datapath", "userspace", "the agents' datapath: userspace, ovs or auto")
	f.StringArrayVar(&cfg.AgentArgs, "agent-arg", nil, "a flag for every agent, repeatable, e.g. --agent-arg=--busy-poll=1ms")
	f.BoolVar(&cfg.PinDatapath, "pin-datapath", true,
		"give each agent's datapath receivers a processor, from the last one down (unless --agent-arg sets --datapath-cpus)")
	f.StringVar(&logLevel, "log-level", "warn", "log level of the cluster")
	return cmd
}
