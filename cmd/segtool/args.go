package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst returns args with the options of the command they name moved
// before its positional arguments, keeping their order, so that
// `segtool data check DIR --classes-from C` means what it says. urfave/cli v2
// (like Go's flag package) stops at the first positional argument and would
// take the options after it for more positional arguments.
//
// The command is found by walking the subcommand names from args[1]. An
// option that takes a value moves with the word after it (unless written
// --name=value); options the command does not know move too, so that
// urfave reports them. "--" ends the options: it and what follows stay
// where they are, after everything else.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	cmds, i := app.Commands, 1
	var cmd *cli.Command
	for i < len(args) {
		next := findCommand(cmds, args[i])
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
		i++
	}
	if cmd == nil || cmd.ArgsUsage == "" {
		// no positional arguments to move options over: a stray word is
		// reported by guard as it stands
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		v := true
		if d, ok := f.(cli.DocGenerationFlag); ok {
			v = d.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = v
		}
	}
	out := append([]string{}, args[:i]...)
	var positional, rest []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = args[i:]
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a) // "-" (standard input) too
			continue
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue[name] && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	out = append(out, positional...)
	return append(out, rest...)
}

// findCommand is the command of cmds called name (or by an alias of it).
func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
