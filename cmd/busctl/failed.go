package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/spf13/cobra"
)

// filterFlags are the selection flags of list, groups, retry, delete and
// export.
type filterFlags struct {
	source, typ, errText, since, until, group string
}

func (f *filterFlags) add(cmd *cobra.Command, withGroup bool) {
	fl := cmd.Flags()
	fl.StringVarP(&f.source, "queue", "q", "", "only messages that failed in this source queue")
	fl.StringVarP(&f.typ, "type", "t", "", "only messages of this type")
	fl.StringVarP(&f.errText, "error", "e", "", "only messages whose error contains this text (any case)")
	fl.StringVar(&f.since, "since", "", "only failures at or after this time (RFC 3339, a date, or a duration ago: 2h)")
	fl.StringVar(&f.until, "until", "", "only failures before this time")
	if withGroup {
		fl.StringVarP(&f.group, "group", "g", "", "only the messages of this group (see busctl failed groups)")
	}
}

func (f *filterFlags) filter(refs []string) (store.Filter, error) {
	sf := store.Filter{Refs: refs, Group: f.group, SourceQueue: f.source, Type: f.typ, Error: f.errText}
	var err error
	if sf.Since, err = parseTime(f.since); err != nil {
		return sf, err
	}
	if sf.Until, err = parseTime(f.until); err != nil {
		return sf, err
	}
	return sf, nil
}

func newFailedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "failed",
		Aliases: []string{"errors", "f"},
		Short:   "List, show, group, retry, delete, export and import failed messages",
		Long: `The failed messages are those the services sent to the error queue after
their retries. busctl takes them into its store (see busctl --help) and
works on them there.`,
	}
	cmd.AddCommand(newListCmd(g), newShowCmd(g), newGroupsCmd(g), newRetryCmd(g), newDeleteCmd(g),
		newExportCmd(g), newImportCmd(g), newIngestCmd(g))
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	var f filterFlags
	var limit, offset int
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List failed messages, oldest first",
		Example: `  busctl failed list
  busctl failed list --queue billing --type shop.ChargeCard --since 2026-12-01 --limit 0
  busctl failed list --error timeout -o json | jq -r '.[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sf, err := f.filter(nil)
			if err != nil {
				return err
			}
			s, _, closeAll, err := g.session(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer closeAll()
			out := cmd.OutOrStdout()
			if limit <= 0 && offset <= 0 {
				// All of them: streamed, not held in memory.
				return streamList(cmd.Context(), s, sf, out, g.json())
			}
			list, err := s.List(cmd.Context(), sf, offset, limit)
			if err != nil {
				return err
			}
			if g.json() {
				if list == nil {
					list = []store.Failed{}
				}
				return writeJSON(out, list)
			}
			w := table(out)
			listHeader(w)
			for i := range list {
				listRow(w, &list[i])
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if limit > 0 && len(list) == limit {
				if total, err := s.Count(cmd.Context(), sf); err == nil && total > offset+limit {
					fmt.Fprintf(os.Stderr, "busctl: %d of %d shown; --limit 0 shows all, --offset pages\n", len(list), total)
				}
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().IntVarP(&limit, "limit", "n", 50, "show at most this many (0: all)")
	cmd.Flags().IntVar(&offset, "offset", 0, "skip this many first")
	return cmd
}

func listHeader(w io.Writer) {
	fmt.Fprintln(w, "SEQ\tID\tTYPE\tSOURCE QUEUE\tRETRIES\tFAILED AT\tERROR")
}

func listRow(w io.Writer, m *store.Failed) {
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", m.Seq, clip(m.ID, 36), clip(m.Type, 30), m.SourceQueue, m.Retries, fmtTime(m.FailedAt), clip(m.ErrorLine(), 80))
}

// streamList writes every message f selects as it reads them: a table
// (aligned per 1,000 rows) or a JSON array.
func streamList(ctx context.Context, s *store.Store, f store.Filter, out io.Writer, asJSON bool) error {
	bw := bufio.NewWriterSize(out, 64<<10)
	defer bw.Flush()
	if asJSON {
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		bw.WriteString("[")
		n := 0
		err := s.Each(ctx, f, false, func(m *store.Failed) error {
			if n > 0 {
				bw.WriteString(",")
			}
			n++
			return enc.Encode(m)
		})
		bw.WriteString("]\n")
		return err
	}
	w := table(bw)
	listHeader(w)
	n := 0
	err := s.Each(ctx, f, false, func(m *store.Failed) error {
		listRow(w, m)
		if n++; n%1000 == 0 {
			return w.Flush()
		}
		return nil
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

func newShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID|SEQ",
		Short: "Show one failed message: error, properties, headers and body",
		Long: `show prints a failed message whole. The body is pretty-printed by its
content type: indented JSON for application/json (and +json types), text as
is, anything else as a hex dump.`,
		Example: `  busctl failed show order-42
  busctl failed show 17 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, closeAll, err := g.session(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer closeAll()
			m, err := s.Get(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return withCode(exitNotFound, err)
			}
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), m)
			}
			return printMessage(cmd.OutOrStdout(), &m)
		},
	}
}

func printMessage(w io.Writer, m *store.Failed) error {
	wm := m.Message
	tw := table(w)
	for _, row := range [][2]string{
		{"Seq", fmt.Sprint(m.Seq)}, {"Id", m.ID}, {"Type", m.Type}, {"Source queue", m.SourceQueue},
		{"Error queue", m.ErrorQueue}, {"Retries", fmt.Sprint(m.Retries)}, {"Group", m.Group + "  " + m.Kind},
		{"Sent", fmtTime(m.Sent)}, {"Failed at", fmtTime(m.FailedAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	tw.Flush()
	fmt.Fprintf(w, "\nError:\n%s\n", indent(m.Error))
	fmt.Fprintln(w, "\nProperties:")
	tw = table(w)
	ts := "-"
	if wm.Timestamp != nil {
		ts = fmtTime(*wm.Timestamp)
	}
	for _, row := range [][2]string{
		{"message_id", wm.ID}, {"correlation_id", wm.CorrelationID}, {"reply_to", wm.ReplyTo},
		{"content_type", wm.ContentType}, {"content_encoding", wm.ContentEncoding}, {"type", wm.Type}, {"timestamp", ts},
	} {
		if row[1] != "" {
			fmt.Fprintf(tw, "  %s:\t%s\n", row[0], row[1])
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nHeaders:")
	keys := make([]string, 0, len(wm.Headers))
	for k := range wm.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw = table(w)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s:\t%s\n", k, headerText(wm.Headers[k]))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nBody:")
	fmt.Fprintln(w, indent(store.PrettyBody(wm)))
	return nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// headerText shows a stored header value: a string as itself, a typed
// value as its JSON.
func headerText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func newGroupsCmd(g *globals) *cobra.Command {
	var f filterFlags
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Group failed messages by source queue and kind of error",
		Long: `groups puts together the failed messages of one source queue whose errors
are of one kind: the first line of the error with numbers, quoted text and
ids masked, so that "charge order 42: card \"4242\" declined" and "charge
order 7: card \"1234\" declined" are one group. Retry or delete a group with
--group ID.`,
		Example: `  busctl failed groups
  busctl failed groups --queue billing -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sf, err := f.filter(nil)
			if err != nil {
				return err
			}
			s, _, closeAll, err := g.session(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer closeAll()
			groups, err := s.Groups(cmd.Context(), sf)
			if err != nil {
				return err
			}
			if g.json() {
				if groups == nil {
					groups = []store.Group{}
				}
				return writeJSON(cmd.OutOrStdout(), groups)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "GROUP\tCOUNT\tSOURCE QUEUE\tFIRST\tLAST\tERROR KIND")
			for _, gr := range groups {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", gr.ID, gr.Count, gr.SourceQueue, fmtTime(gr.First), fmtTime(gr.Last), clip(gr.Kind, 80))
			}
			return w.Flush()
		},
	}
	f.add(cmd, false)
	return cmd
}

// selection reads the refs, filter flags and --all of retry and delete, and
// refuses an empty selection so that a bare command does nothing by
// mistake.
func selection(f *filterFlags, refs []string, all bool) (store.Filter, error) {
	sf, err := f.filter(refs)
	if err != nil {
		return sf, err
	}
	if sf.IsZero() && !all {
		return sf, withCode(exitUsage, errors.New("say which messages: ids or seqs, --group, a filter (--queue, --type, --error, --since, --until), or --all"))
	}
	if all && !sf.IsZero() {
		return sf, withCode(exitUsage, errors.New("--all takes no ids nor filter"))
	}
	return sf, nil
}

func newRetryCmd(g *globals) *cobra.Command {
	var f filterFlags
	var all, dryRun bool
	cmd := &cobra.Command{
		Use:   "retry [ID|SEQ...]",
		Short: "Send failed messages back to the queues they failed in, with a fresh set of retries",
		Long: `retry sends the messages selected (ids or seqs, a group, a filter, or --all)
back to their source queues, as bus.ReplayErrors does: through the direct
exchange, mandatory, with ErrorRetries, ErrorDetails, SourceQueue and
DeferredTime removed. Messages go in batches of 500; each batch is confirmed
by the broker on its destination before it leaves the store, so an
interrupted retry (Ctrl-C: the batch under way completes) loses and
duplicates nothing. A message whose queue no longer exists stays in the
store, reported, and the exit code is 4.`,
		Example: `  busctl failed retry order-42 order-43
  busctl failed retry --group 9c1e5b2a7d40
  busctl failed retry --queue billing --error "card declined"
  busctl failed retry --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sf, err := selection(&f, args, all)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, b, closeAll, err := g.session(ctx, !dryRun)
			if err != nil {
				return err
			}
			defer closeAll()
			n, err := s.Count(ctx, sf)
			if err != nil {
				return err
			}
			if n == 0 {
				return withCode(exitNotFound, errors.New("no failed message matches"))
			}
			if dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "would retry %d messages\n", n)
				return nil
			}
			bar := g.progress("retrying")
			res, rerr := s.Retry(ctx, b.t, sf, bar.set)
			bar.done()
			if g.json() {
				if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "retried %d messages\n", len(res.Retried))
				for _, l := range res.Left {
					fmt.Fprintf(cmd.OutOrStdout(), "left %d (id %q, source queue %q): %s\n", l.Seq, l.ID, l.SourceQueue, l.Reason)
				}
			}
			if rerr != nil {
				if ctx.Err() != nil {
					return withCode(exitInterrupted, rerr)
				}
				return rerr
			}
			if len(res.Left) > 0 {
				return withCode(exitPartial, fmt.Errorf("%d of %d messages could not be retried and stay in the store", len(res.Left), n))
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().BoolVar(&all, "all", false, "retry every failed message")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be retried, send nothing")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var f filterFlags
	var all, yes bool
	cmd := &cobra.Command{
		Use:     "delete [ID|SEQ...]",
		Aliases: []string{"rm"},
		Short:   "Delete failed messages for good",
		Long: `delete removes the messages selected from the store: they are not handled.
Deleting more than one message asks for --yes.`,
		Example: `  busctl failed delete order-42
  busctl failed delete --group 9c1e5b2a7d40 --yes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sf, err := selection(&f, args, all)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, _, closeAll, err := g.session(ctx, false)
			if err != nil {
				return err
			}
			defer closeAll()
			n, err := s.Count(ctx, sf)
			if err != nil {
				return err
			}
			if n == 0 {
				return withCode(exitNotFound, errors.New("no failed message matches"))
			}
			if n > 1 && !yes {
				return withCode(exitUsage, fmt.Errorf("this deletes %d messages for good; add --yes to do it", n))
			}
			bar := g.progress("deleting")
			d, err := s.Delete(ctx, sf, bar.set)
			bar.done()
			if g.json() {
				writeJSON(cmd.OutOrStdout(), map[string]int{"deleted": d})
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %d messages\n", d)
			}
			return err
		},
	}
	f.add(cmd, true)
	cmd.Flags().BoolVar(&all, "all", false, "delete every failed message")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do delete more than one message")
	return cmd
}

func newExportCmd(g *globals) *cobra.Command {
	var f filterFlags
	var file string
	cmd := &cobra.Command{
		Use:   "export [ID|SEQ...]",
		Short: "Write failed messages as JSON Lines",
		Long: `export writes the messages selected (all by default) as JSON Lines: one
object a line with error_queue, failed_at and message (properties, headers
with their AMQP types, body). busctl failed import reads it back, and busctl
send --jsonl sends its messages.`,
		Example: `  busctl failed export > failed.jsonl
  busctl failed export --queue billing --file billing.jsonl`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sf, err := f.filter(args)
			if err != nil {
				return err
			}
			s, _, closeAll, err := g.session(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer closeAll()
			out := cmd.OutOrStdout()
			if file != "" && file != "-" {
				fh, err := os.Create(file)
				if err != nil {
					return err
				}
				defer fh.Close()
				out = fh
			}
			bar := g.progress("exporting")
			total, _ := s.Count(cmd.Context(), sf)
			n, err := s.Export(cmd.Context(), out, sf, func(done int) { bar.set(done, total) })
			bar.done()
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "busctl: exported %d messages\n", n)
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to this file instead of standard output")
	return cmd
}

func newImportCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Read failed messages from JSON Lines (an export) into the store",
		Example: `  busctl failed import --file failed.jsonl
  busctl failed import < failed.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			in := cmd.InOrStdin()
			if file != "" && file != "-" {
				fh, err := os.Open(file)
				if err != nil {
					return err
				}
				defer fh.Close()
				in = fh
			}
			bar := g.progress("importing")
			read, stored, err := s.Import(cmd.Context(), in, g.errorQueue, func(done int) { bar.set(done, done) })
			bar.done()
			if g.json() {
				writeJSON(cmd.OutOrStdout(), map[string]int{"read": read, "stored": stored})
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "read %d messages, stored %d (the others were in the store already)\n", read, stored)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read this file instead of standard input")
	return cmd
}

func newIngestCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Take the failed messages of the error queue into the store",
		Long: `ingest moves the messages of the error queue into the store, which every
other command does first anyway; with --follow it keeps doing so until
interrupted (busctl serve does it too).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			if !follow {
				g.noIngest = false
				return g.ingest(cmd.Context(), s, b)
			}
			n, err := s.Ingest(cmd.Context(), b.t, g.errorQueue, store.IngestOptions{Follow: true})
			fmt.Fprintf(os.Stderr, "busctl: took %d failed messages into the store\n", n)
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "keep ingesting until interrupted")
	return cmd
}
