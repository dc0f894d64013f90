package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// configSections names each struct of a config file by where it stands in
// the file, for messages.
var configSections = map[reflect.Type]string{
	reflect.TypeFor[Config]():        "the top level",
	reflect.TypeFor[DataConfig]():    "data",
	reflect.TypeFor[AugmentConfig](): "data.augment",
	reflect.TypeFor[ModelConfig]():   "model",
	reflect.TypeFor[TrainConfig]():   "train",
}

var (
	unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+\.(\w+)$`)
	wrongType    = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// explainYAML rewrites the decoding errors of yaml.v3, which speak of Go
// types ("field epohcs not found in type main.TrainConfig"), in the words of
// the file: the section, the key and the keys there are, the closest one
// when it looks like a typo; what a value should have been.
func explainYAML(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		msgs = append(msgs, explainYAMLLine(e))
	}
	return strings.Join(msgs, "; ")
}

func explainYAMLLine(e string) string {
	if m := unknownField.FindStringSubmatch(e); m != nil {
		for t, section := range configSections {
			if t.Name() != m[3] {
				continue
			}
			keys := yamlKeys(t)
			msg := fmt.Sprintf("line %s: unknown key %q in %s", m[1], m[2], section)
			if near := closest(m[2], keys); near != "" {
				return msg + fmt.Sprintf(" (did you mean %q?)", near)
			}
			return msg + fmt.Sprintf(" (its keys: %s)", strings.Join(keys, ", "))
		}
	}
	if m := wrongType.FindStringSubmatch(e); m != nil {
		given := map[string]string{"str": "text", "int": "a whole number", "float": "a number", "bool": "true/false",
			"seq": "a list", "map": "a mapping of keys", "null": "empty"}[m[2]]
		want := map[string]string{"int": "a whole number", "uint64": "a whole number >= 0", "*int": "a whole number",
			"float64": "a number", "*float64": "a number", "bool": "true or false", "string": "text",
			"[]float64": "a list of numbers, [a, b]"}[m[4]]
		if want == "" {
			want = "something else"
			if strings.HasPrefix(m[4], "main.") {
				want = "a mapping of keys"
			}
		}
		if given == "" {
			given = m[2]
		}
		v := m[3]
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("line %s: %q is %s; this key takes %s", m[1], v, given, want)
	}
	return e
}

// yamlKeys lists the YAML keys of a struct type, in order.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" && f.IsExported() {
			keys = append(keys, name)
		}
	}
	return keys
}

// closest is the key within two edits of s (a typo), if there is one.
func closest(s string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, with a swap of two neighbours
// counting as one edit (epohcs -> epochs).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range rb {
		d[0][j+1] = j + 1
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = slices.Min([]int{d[i-1][j] + 1, d[i][j-1] + 1, d[i-1][j-1] + cost})
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
