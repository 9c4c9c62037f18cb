package main

import "github.com/spf13/cobra"

// registerCLI adds the client verbs (bridge, router, port, ...).
func registerCLI(root *cobra.Command) {}
