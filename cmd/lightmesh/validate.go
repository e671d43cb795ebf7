package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// validation is the result of validating one file, in validate's JSON
// output.
type validation struct {
	File     string    `json:"file"`
	Valid    bool      `json:"valid"`
	Problems []problem `json:"problems,omitempty"`
	// More counts problems beyond router.MaxProblems.
	More int `json:"more,omitempty"`
}

// problem is one problem of a document: its path, reason and place.
type problem struct {
	Path   string `json:"path,omitempty"`
	Reason string `json:"reason"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// yamlSyntax is a decode error of the YAML parser, which names a line only.
var yamlSyntax = regexp.MustCompile(`^router: decode: yaml: line ([0-9]+): (.*)$`)

// problemsOf turns router.Load's error into problems.
func problemsOf(err error) ([]problem, int) {
	var verr *router.ValidationError
	if !errors.As(err, &verr) {
		m := yamlSyntax.FindStringSubmatch(err.Error())
		if m == nil {
			return []problem{{Reason: err.Error()}}, 0
		}
		line, _ := strconv.Atoi(m[1])
		reason := "YAML syntax: " + m[2]
		if m[2] == "found character that cannot start any token" {
			reason += " (YAML indents with spaces, never a tab; a value starting with @ or ` needs quotes)"
		}
		return []problem{{Reason: reason, Line: line}}, 0
	}
	out := make([]problem, len(verr.Problems))
	for i, p := range verr.Problems {
		out[i] = problem{Path: p.Path, Reason: p.Reason, Line: p.Line, Column: p.Column}
	}
	return out, verr.More
}

// serviceFlag adds --service, which validates a document as one of the
// per-service layout (mesh.WithRuleCatalog).
func serviceFlag(fs *flag.FlagSet) *string {
	return fs.String("service", "", "validate as the document of this service in the per-service layout: it may describe this service only ("+rules.DefaultsName+": the defaults document, defaults only)")
}

// load validates data as the mesh would: as a whole document, or as the
// per-service document of service when it is set.
func load(service string, data []byte) (*router.Rules, error) {
	switch service {
	case "":
		return router.Load(data)
	case rules.DefaultsName:
		return router.LoadPart("", data)
	default:
		return router.LoadPart(service, data)
	}
}

func runValidate(_ context.Context, c *cli, args []string) error {
	fs := newFlags(c, "validate")
	files := fs.String("f", "", "a file to validate (the same as an argument)")
	service := serviceFlag(fs)
	out := outputFlag(fs, "text", "json", "yaml")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *files != "" {
		rest = append([]string{*files}, rest...)
	}
	if err := checkOutput(*out, "text", "json", "yaml"); err != nil {
		return err
	}
	if len(rest) == 0 {
		fs.Usage()
		return exitError{2}
	}
	results := make([]validation, 0, len(rest))
	invalid := 0
	for _, name := range rest {
		v := validation{File: name, Valid: true}
		data, err := os.ReadFile(name)
		if err == nil {
			_, err = load(*service, data)
		}
		if err != nil {
			v.Valid = false
			v.Problems, v.More = problemsOf(err)
			invalid++
		}
		results = append(results, v)
	}
	if *out != "text" {
		if err := writeStructured(c.stdout, *out, results); err != nil {
			return err
		}
	} else {
		for _, v := range results {
			if v.Valid {
				fmt.Fprintf(c.stdout, "%s: valid\n", v.File)
				continue
			}
			for _, p := range v.Problems {
				fmt.Fprintf(c.stdout, "%s\n", formatProblem(v.File, p))
			}
			if v.More > 0 {
				fmt.Fprintf(c.stdout, "%s: ... and %d more problems\n", v.File, v.More)
			}
		}
	}
	if invalid > 0 {
		if *out == "text" {
			fmt.Fprintf(c.stderr, "lightmesh validate: %d of %d files invalid\n", invalid, len(results))
		}
		return errReported
	}
	return nil
}

// printProblems prints the problems of router.Load's err for file to
// stderr, one per line.
func (c *cli) printProblems(file string, err error) {
	problems, more := problemsOf(err)
	for _, p := range problems {
		fmt.Fprintln(c.stderr, formatProblem(file, p))
	}
	if more > 0 {
		fmt.Fprintf(c.stderr, "%s: ... and %d more problems\n", file, more)
	}
}

// formatProblem writes p the way compilers do: FILE:LINE:COLUMN: PATH: REASON
// (FILE:LINE: when the column is not known).
func formatProblem(file string, p problem) string {
	place := file
	switch {
	case p.Line > 0 && p.Column > 0:
		place = fmt.Sprintf("%s:%d:%d", file, p.Line, p.Column)
	case p.Line > 0: // the YAML parser names no column
		place = fmt.Sprintf("%s:%d", file, p.Line)
	}
	if p.Path == "" {
		return place + ": " + p.Reason
	}
	return place + ": " + p.Path + ": " + p.Reason
}
