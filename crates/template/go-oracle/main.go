// Command go-oracle renders the eso-template differential corpus with Go's text/template and
// sprig v3, the way ESO v2 executes templates: missingkey=error, data as map[string]string, the
// sprig TxtFuncMap without env, expandenv and getHostByName. It reads corpus.jsonl on stdin and
// writes one golden line per case on stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/Masterminds/sprig/v3"
)

type corpusCase struct {
	Name   string            `json:"name"`
	Tmpl   string            `json:"tmpl"`
	Data   map[string]string `json:"data"`
	Delims []string          `json:"delims,omitempty"`
}

type golden struct {
	Name   string  `json:"name"`
	Out    *string `json:"out,omitempty"`
	OutB64 []byte  `json:"out_b64,omitempty"`
	Err    string  `json:"err,omitempty"`
	Msg    string  `json:"msg,omitempty"`
}

func funcs() template.FuncMap {
	m := sprig.TxtFuncMap()
	delete(m, "env")
	delete(m, "expandenv")
	delete(m, "getHostByName")
	return m
}

func render(c corpusCase) (out []byte, class string, msg string) {
	defer func() {
		if r := recover(); r != nil {
			out, class, msg = nil, "exec", fmt.Sprint(r)
		}
	}()
	t := template.New(c.Name).Option("missingkey=error").Funcs(funcs())
	if len(c.Delims) == 2 {
		t = t.Delims(c.Delims[0], c.Delims[1])
	}
	t, err := t.Parse(c.Tmpl)
	if err != nil {
		return nil, "parse", err.Error()
	}
	data := c.Data
	if data == nil {
		data = map[string]string{}
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, "exec", err.Error()
	}
	return buf.Bytes(), "", ""
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}
		var c corpusCase
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			fmt.Fprintf(os.Stderr, "bad corpus line: %v: %s\n", err, line)
			os.Exit(2)
		}
		out, class, msg := render(c)
		g := golden{Name: c.Name, Err: class, Msg: msg}
		if class == "" {
			if utf8.Valid(out) {
				s := string(out)
				g.Out = &s
			} else {
				g.OutB64 = out
			}
		}
		if err := enc.Encode(g); err != nil {
			os.Exit(3)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
