// Package cli is the command-line client of the MidoNet REST API: the
// `midonet bridge|router|port|route|chain|rule|port-group|host|tunnel-zone|
// dhcp|dhcp-host|ip-addr-group ...` verbs. It speaks only HTTP to the API and
// finds its way from the Application root and the links in each object, as
// MidoNet's own clients do, so it works against any v5-compatible server.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// DefaultAPI is the API's base URL when neither --api nor MIDONET_API is set.
const DefaultAPI = "http://127.0.0.1:8181/midonet-api"

// EnvAPI names the environment variable that replaces DefaultAPI.
const EnvAPI = "MIDONET_API"

// options are the flags every client verb shares.
type options struct {
	api     string
	output  string
	timeout time.Duration
	// httpClient, when set, replaces the default HTTP client (tests).
	httpClient *http.Client
	creds      credentials
}

// Register adds the client verbs to root. Each verb takes --api and
// -o table|json.
func Register(root *cobra.Command) {
	opts := &options{}
	for _, c := range append(commands(opts), authCommands(opts)...) {
		pf := c.PersistentFlags()
		pf.StringVar(&opts.api, "api", DefaultAPI, "base URL of the MidoNet REST API (env "+EnvAPI+")")
		pf.StringVarP(&opts.output, "output", "o", "table", "output format: table or json")
		pf.DurationVar(&opts.timeout, "timeout", 30*time.Second, "time limit of each request")
		opts.creds.flags(c)
		root.AddCommand(c)
	}
}

// session is what one run of a verb works with.
type session struct {
	ctx    context.Context
	client *Client
	out    io.Writer
	json   bool
}

// session checks the shared flags and opens a client.
func (o *options) session(cmd *cobra.Command) (*session, error) {
	api := o.api
	if f := cmd.Flag("api"); f == nil || !f.Changed {
		if env := os.Getenv(EnvAPI); env != "" {
			api = env
		}
	}
	if !strings.HasPrefix(api, "http://") && !strings.HasPrefix(api, "https://") {
		return nil, fmt.Errorf("--api %q: want an http:// or https:// URL such as %s", api, DefaultAPI)
	}
	s := &session{ctx: cmd.Context(), out: cmd.OutOrStdout()}
	if s.ctx == nil {
		s.ctx = context.Background()
	}
	switch o.output {
	case "table":
	case "json":
		s.json = true
	default:
		return nil, fmt.Errorf("-o %q: want table or json", o.output)
	}
	hc := o.httpClient
	if hc == nil {
		if err := o.creds.resolve(cmd); err != nil {
			return nil, err
		}
		rt, err := o.creds.transport(api)
		if err != nil {
			return nil, err
		}
		hc = &http.Client{Timeout: o.timeout, Transport: rt}
	}
	s.client = NewClient(api, hc)
	return s, nil
}

// linkPrefix is the start of every URI the server emits, used to keep links
// out of `show` tables.
func (s *session) linkPrefix() string {
	root, err := s.client.Root(s.ctx)
	if err != nil {
		return ""
	}
	return root["uri"]
}

// printList prints a collection as a table or a JSON array.
func (s *session) printList(cols []column, list []Object) error {
	if s.json {
		if list == nil {
			list = []Object{}
		}
		return writeJSON(s.out, list)
	}
	return writeTable(s.out, cols, list)
}

// printObject prints one object as field lines or JSON.
func (s *session) printObject(o Object) error {
	if s.json {
		return writeJSON(s.out, o)
	}
	return writeFields(s.out, o, s.linkPrefix())
}

// createAndShow posts body, reads the new item back from Location and
// prints it.
func (s *session) createAndShow(url, media string, body Object) error {
	loc, err := s.client.Create(s.ctx, url, media, body)
	if err != nil {
		return err
	}
	if loc == "" {
		return errors.New("the API created the object but sent no Location")
	}
	return s.show(loc, media)
}

// show reads the object at url and prints it.
func (s *session) show(url, media string) error {
	o, err := s.client.Get(s.ctx, url, media)
	if err != nil {
		return err
	}
	return s.printObject(o)
}

// showAgain reads o back from its uri and prints it.
func (s *session) showAgain(o Object, k *kind) error {
	u, err := link(k, o, "uri")
	if err != nil {
		return err
	}
	return s.show(u, k.media)
}

// putAndShow sends o back to its uri and prints what the API then holds.
// The API's PUT replaces the whole object, so o must be complete: read it,
// change what was asked, send it all back.
func (s *session) putAndShow(o Object, k *kind) error {
	u, err := link(k, o, "uri")
	if err != nil {
		return err
	}
	if err := s.client.Update(s.ctx, u, k.media, o); err != nil {
		return err
	}
	return s.show(u, k.media)
}

// deleteObject deletes o through its uri.
func (s *session) deleteObject(o Object, k *kind) error {
	u, err := link(k, o, "uri")
	if err != nil {
		return err
	}
	return s.client.Delete(s.ctx, u)
}

// printCollection lists the collection at url and prints it.
func (s *session) printCollection(url, media string, cols []column) error {
	list, err := s.client.List(s.ctx, url, media)
	if err != nil {
		return err
	}
	return s.printList(cols, list)
}

// run wraps a verb body with session setup.
func (o *options) run(fn func(s *session, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := o.session(cmd)
		if err != nil {
			return err
		}
		return fn(s, cmd, args)
	}
}

// parent is a flag naming the object a resource lives under, and the link
// of that object that holds the resource's collection.
type parent struct {
	flag *field // kRef flag, e.g. --bridge
	link string // key of the parent's link, e.g. "ports"
	// body adds what the parent implies to a create body (e.g. port type).
	body func(Object)
}

// resource describes a resource's generic verbs.
type resource struct {
	*kind
	use     string
	aliases []string
	short   string
	columns []column
	// fields are the create and update flags; createOnly and updateOnly
	// belong to one verb.
	fields     []field
	createOnly []field
	updateOnly []field
	// required flag names on create.
	required []string
	// parents: when set, create needs exactly one of them and list accepts one.
	parents []parent
	// noUpdate drops the update verb (the API has no PUT for the type).
	noUpdate bool
	// prepare adjusts a create body after the flags are applied.
	prepare func(s *session, body Object) error
	// examples per verb.
	examples map[string]string
}

// findParent returns the parent given on the command line, its object and
// the URI of its collection; ok is false when none was given.
func (r *resource) findParent(s *session, cmd *cobra.Command) (p *parent, url string, ok bool, err error) {
	var given []*parent
	for i := range r.parents {
		if cmd.Flags().Changed(r.parents[i].flag.flag) {
			given = append(given, &r.parents[i])
		}
	}
	switch len(given) {
	case 0:
		return nil, "", false, nil
	case 1:
	default:
		return nil, "", false, fmt.Errorf("give only one of %s", r.parentFlags())
	}
	p = given[0]
	ref := cmd.Flags().Lookup(p.flag.flag).Value.String()
	o, err := s.resolve(p.flag.ref, ref)
	if err != nil {
		return nil, "", false, err
	}
	url, err = link(p.flag.ref, o, p.link)
	return p, url, err == nil, err
}

func (r *resource) parentFlags() string {
	names := make([]string, len(r.parents))
	for i, p := range r.parents {
		names[i] = "--" + p.flag.flag
	}
	return strings.Join(names, " or ")
}

// command builds `midonet <use> list|show|create|update|delete`.
func (r *resource) command(o *options) *cobra.Command {
	root := group(r.use, r.short)
	root.Aliases = r.aliases

	list := &cobra.Command{
		Use:     "list",
		Short:   "List " + r.noun + "s",
		Example: r.examples["list"],
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			_, url, ok, err := r.findParent(s, cmd)
			if err != nil {
				return err
			}
			if !ok {
				if r.collection == "" {
					return fmt.Errorf("give %s", r.parentFlags())
				}
				if url, err = s.client.Collection(s.ctx, r.collection); err != nil {
					return err
				}
			}
			return s.printCollection(url, r.media, r.columns)
		}),
	}
	for i := range r.parents {
		r.parents[i].flag.addTo(list.Flags())
	}
	root.AddCommand(list)

	root.AddCommand(&cobra.Command{
		Use:     "show " + strings.ToUpper(r.refWord()),
		Short:   "Show one " + r.noun,
		Example: r.examples["show"],
		Args:    cobra.ExactArgs(1),
		RunE: o.run(func(s *session, _ *cobra.Command, args []string) error {
			obj, err := s.resolve(r.kind, args[0])
			if err != nil {
				return err
			}
			return s.printObject(obj)
		}),
	})

	create := &cobra.Command{
		Use:     "create",
		Short:   "Create a " + r.noun,
		Example: r.examples["create"],
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			for _, name := range r.required {
				if !cmd.Flags().Changed(name) {
					return fmt.Errorf("--%s is required", name)
				}
			}
			p, url, ok, err := r.findParent(s, cmd)
			if err != nil {
				return err
			}
			body := Object{}
			switch {
			case ok:
				if p.body != nil {
					p.body(body)
				}
			case len(r.parents) > 0:
				return fmt.Errorf("give %s: a %s is created under it", r.parentFlags(), r.noun)
			default:
				if url, err = s.client.Collection(s.ctx, r.collection); err != nil {
					return err
				}
			}
			if err := s.applyFields(cmd, r.createOnly, body); err != nil {
				return err
			}
			if err := s.applyFields(cmd, r.fields, body); err != nil {
				return err
			}
			if r.prepare != nil {
				if err := r.prepare(s, body); err != nil {
					return err
				}
			}
			return s.createAndShow(url, r.media, body)
		}),
	}
	for i := range r.parents {
		r.parents[i].flag.addTo(create.Flags())
	}
	addFlags(create, r.createOnly...)
	addFlags(create, r.fields...)
	root.AddCommand(create)

	if !r.noUpdate {
		update := &cobra.Command{
			Use:     "update " + strings.ToUpper(r.refWord()),
			Short:   "Change fields of a " + r.noun + " (flags not given keep their value)",
			Example: r.examples["update"],
			Args:    cobra.ExactArgs(1),
			RunE: o.run(func(s *session, cmd *cobra.Command, args []string) error {
				obj, err := s.resolve(r.kind, args[0])
				if err != nil {
					return err
				}
				if err := s.applyFields(cmd, r.fields, obj); err != nil {
					return err
				}
				if err := s.applyFields(cmd, r.updateOnly, obj); err != nil {
					return err
				}
				return s.putAndShow(obj, r.kind)
			}),
		}
		addFlags(update, r.fields...)
		addFlags(update, r.updateOnly...)
		root.AddCommand(update)
	}

	root.AddCommand(&cobra.Command{
		Use:     "delete " + strings.ToUpper(r.refWord()) + "...",
		Short:   "Delete " + r.noun + "s",
		Example: r.examples["delete"],
		Args:    cobra.MinimumNArgs(1),
		RunE: o.run(func(s *session, _ *cobra.Command, args []string) error {
			for _, ref := range args {
				obj, err := s.resolve(r.kind, ref)
				if err != nil {
					return err
				}
				if err := s.deleteObject(obj, r.kind); err != nil {
					return err
				}
			}
			return nil
		}),
	})
	return root
}

// refWord is how usage lines name the argument: NAME|ID or ID.
func (r *resource) refWord() string {
	if r.named {
		return "name|id"
	}
	return "id"
}

// group returns a command that only holds verbs. Run with arguments it
// names the verbs it has: cobra would otherwise print help and succeed on
// `midonet chain update x` when chains have no update.
func group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			var verbs []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() {
					verbs = append(verbs, c.Name())
				}
			}
			return fmt.Errorf("unknown verb %q for %q; try one of: %s", args[0], cmd.CommandPath(), strings.Join(verbs, ", "))
		},
	}
}
