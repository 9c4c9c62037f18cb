package main

import (
	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/cli"
)

// registerCLI adds the client verbs (bridge, router, port, ...).
func registerCLI(root *cobra.Command) { cli.Register(root) }
