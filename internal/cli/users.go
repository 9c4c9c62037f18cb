package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// EnvNewPassword passes a new user's password without a flag (which other
// users of the machine could read in the process list).
const EnvNewPassword = "MIDONET_NEW_PASSWORD"

// authCommands are `midonet login` and `midonet user ...`.
func authCommands(o *options) []*cobra.Command {
	login := &cobra.Command{
		Use:   "login",
		Short: "Log in and print a token for MIDONET_TOKEN",
		Long: `Logs in to the API with the credentials given (--user and --password, their
environment variables, or a credential file) and prints the token as a shell
line to export, so that later commands send it without logging in again.`,
		Example: "  eval $(midonet login --credentials /var/lib/midonet/admin.credentials)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := o.session(cmd)
			if err != nil {
				return err
			}
			if o.creds.user == "" {
				return errors.New("login needs a user: pass --user and --password, or --credentials FILE")
			}
			rt, err := o.creds.transport(s.client.base)
			if err != nil {
				return err
			}
			tok, err := Login(rt.(*authTransport).base, s.client.base+"/login", o.creds.user, o.creds.password, o.creds.tenant)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "export %s=%s\n", EnvToken, tok)
			return nil
		},
	}

	users := &cobra.Command{Use: "user", Short: "Users of the cluster's local authentication (admin only)"}
	usersURL := func(s *session) string { return s.client.base + "/users" }
	users.AddCommand(&cobra.Command{
		Use: "list", Short: "List the users", Args: cobra.NoArgs, Example: "  midonet user list -o json",
		RunE: o.run(func(s *session, cmd *cobra.Command, args []string) error {
			var list []Object
			if err := s.client.do(s.ctx, http.MethodGet, usersURL(s), "application/json", nil, "", &list); err != nil {
				return err
			}
			return s.printList([]column{col("NAME", "name"), col("TENANT", "tenant"), col("ROLE", "role")}, list)
		}),
	})
	var tenant, role, password string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user",
		Long: `Creates a user of the cluster's local authentication. Roles: admin (everything),
tenant_admin (read and write the tenant's objects), tenant_user (read them).
The password comes from --user-password or ` + EnvNewPassword + `.`,
		Example: "  MIDONET_NEW_PASSWORD=s3cret-pass midonet user create alice --tenant acme --role tenant_admin",
		Args:    cobra.ExactArgs(1),
		RunE: o.run(func(s *session, cmd *cobra.Command, args []string) error {
			if password == "" {
				password = os.Getenv(EnvNewPassword)
			}
			if password == "" {
				return errors.New("give the new user's password with --user-password or " + EnvNewPassword)
			}
			body := Object{"name": args[0], "tenant": tenant, "role": role, "password": password}
			if err := s.client.do(s.ctx, http.MethodPost, usersURL(s), "", body, "application/json", nil); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "user %s created (tenant %s, role %s)\n", args[0], tenant, role)
			return nil
		}),
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant (project) of the user")
	create.Flags().StringVar(&role, "role", "tenant_user", "admin, tenant_admin or tenant_user")
	create.Flags().StringVar(&password, "user-password", "", "the new user's password (at least 8 characters)")
	users.AddCommand(create)
	users.AddCommand(&cobra.Command{
		Use: "delete NAME", Short: "Delete a user and revoke its tokens", Args: cobra.ExactArgs(1),
		Example: "  midonet user delete alice",
		RunE: o.run(func(s *session, cmd *cobra.Command, args []string) error {
			if strings.Contains(args[0], "/") {
				return fmt.Errorf("user name %q: no '/' allowed", args[0])
			}
			return s.client.do(s.ctx, http.MethodDelete, usersURL(s)+"/"+args[0], "", nil, "", nil)
		}),
	})
	return []*cobra.Command{login, users}
}
