package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

func TestFlagsFirst(t *testing.T) {
	app := &cli.App{Commands: []*cli.Command{
		{Name: "data", Subcommands: []*cli.Command{{
			Name: "check", ArgsUsage: "DIR",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "classes-from", Aliases: []string{"c"}},
				&cli.BoolFlag{Name: "json"},
			},
		}}},
		{Name: "train", Flags: []cli.Flag{&cli.StringFlag{Name: "config"}}},
	}}
	for _, tc := range []struct {
		name     string
		in, want []string
	}{
		{"options first already", []string{"segtool", "data", "check", "--json", "-c", "x.yaml", "dir"},
			[]string{"segtool", "data", "check", "--json", "-c", "x.yaml", "dir"}},
		{"options after the argument", []string{"segtool", "data", "check", "dir", "--classes-from", "x.yaml", "--json"},
			[]string{"segtool", "data", "check", "--classes-from", "x.yaml", "--json", "dir"}},
		{"a bool option does not take the argument", []string{"segtool", "data", "check", "--json", "dir"},
			[]string{"segtool", "data", "check", "--json", "dir"}},
		{"name=value", []string{"segtool", "data", "check", "dir", "--classes-from=x.yaml"},
			[]string{"segtool", "data", "check", "--classes-from=x.yaml", "dir"}},
		{"an unknown option moves so it is reported", []string{"segtool", "data", "check", "dir", "--nope"},
			[]string{"segtool", "data", "check", "--nope", "dir"}},
		{"-- ends the options", []string{"segtool", "data", "check", "dir", "--", "--json"},
			[]string{"segtool", "data", "check", "dir", "--", "--json"}},
		{"- is an argument", []string{"segtool", "data", "check", "-", "--json"},
			[]string{"segtool", "data", "check", "--json", "-"}},
		{"commands without arguments are left alone", []string{"segtool", "train", "stray", "--config", "x"},
			[]string{"segtool", "train", "stray", "--config", "x"}},
		{"no command", []string{"segtool", "--help"}, []string{"segtool", "--help"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, flagsFirst(app, tc.in))
		})
	}
}

// The README's own example puts --classes-from after the folder.
func TestDataCheckOptionsAfterFolder(t *testing.T) {
	dir := shapesForCheck(t)
	cfg := filepath.Join(t.TempDir(), "shapes.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(shapesClassConfig), 0o644))
	code, out, errOut := segtool(t, "data", "check", dir, "--classes-from", cfg)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "classes:    4 (given), ignore index 255")

	code, _, errOut = segtool(t, "data", "check", dir, "--no-such-option")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no-such-option")
}
