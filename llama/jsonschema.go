package llama

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// JSONSchemaGrammar converts a JSON Schema into a GBNF grammar (start
// symbol "root") that only admits JSON documents the schema accepts, for
// llama.cpp's grammar sampler (--json-schema).
//
// Supported: type (one or a list), properties with required (keys in the
// schema's order, required ones first), additionalProperties (false, true or
// a schema), items, prefixItems, minItems/maxItems, enum, const, anyOf,
// oneOf, local $ref (#/$defs/..., #/definitions/..., #), minLength/maxLength,
// and the formats date, time, date-time and uuid. Keywords that would
// constrain values in ways the grammar cannot express here (pattern,
// minimum, multipleOf, allOf, not, ...) are refused rather than ignored, so
// a schema never silently admits more than it says; annotations (title,
// description, default, examples, $schema, $id, $comment) are ignored.
func JSONSchemaGrammar(schema []byte) (string, error) {
	root, err := parseOrdered(schema)
	if err != nil {
		return "", fmt.Errorf("json schema: %w", err)
	}
	g := &grammarBuilder{root: root, rules: map[string]string{}, refs: map[string]string{}}
	body, err := g.visit(root, "root")
	if err != nil {
		return "", fmt.Errorf("json schema: %w", err)
	}
	g.rules["root"] = body
	return g.String(), nil
}

// ---- an order-preserving JSON tree ----------------------------------------

type jkind int

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

// jnode is a JSON value that keeps its object keys in document order (a
// schema's property order is the order the model should write them in).
type jnode struct {
	kind jkind
	b    bool
	num  json.Number
	str  string
	arr  []*jnode
	keys []string
	vals []*jnode
}

func (n *jnode) get(key string) *jnode {
	if n == nil || n.kind != jObject {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// marshal writes n as compact JSON.
func (n *jnode) marshal(w *bytes.Buffer) {
	switch n.kind {
	case jNull:
		w.WriteString("null")
	case jBool:
		w.WriteString(strconv.FormatBool(n.b))
	case jNumber:
		w.WriteString(n.num.String())
	case jString:
		b, _ := json.Marshal(n.str)
		w.Write(b)
	case jArray:
		w.WriteByte('[')
		for i, v := range n.arr {
			if i > 0 {
				w.WriteByte(',')
			}
			v.marshal(w)
		}
		w.WriteByte(']')
	case jObject:
		w.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				w.WriteByte(',')
			}
			b, _ := json.Marshal(k)
			w.Write(b)
			w.WriteByte(':')
			n.vals[i].marshal(w)
		}
		w.WriteByte('}')
	}
}

func parseOrdered(data []byte) (*jnode, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readNode(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the schema")
	}
	return n, nil
}

const maxSchemaDepth = 64

func readNode(dec *json.Decoder, depth int) (*jnode, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxSchemaDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &jnode{kind: jNull}, nil
	case bool:
		return &jnode{kind: jBool, b: t}, nil
	case json.Number:
		return &jnode{kind: jNumber, num: t}, nil
	case string:
		return &jnode{kind: jString, str: t}, nil
	case json.Delim:
		switch t {
		case '[':
			n := &jnode{kind: jArray}
			for dec.More() {
				v, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, v)
			}
			_, err := dec.Token()
			return n, err
		case '{':
			n := &jnode{kind: jObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k)
				n.vals = append(n.vals, v)
			}
			_, err := dec.Token()
			return n, err
		}
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// ---- the grammar ----------------------------------------------------------

// Primitive rules, added to the grammar when used. Whitespace between tokens
// is bounded so a model cannot pad forever.
var primitiveRules = map[string]string{
	"space":     `| " " | "\n" [ \t]{0,20}`,
	"char":      `[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})`,
	"string":    `"\"" char* "\"" space`,
	"integral":  `("-"? ([0-9] | [1-9] [0-9]{0,15}))`,
	"integer":   `integral space`,
	"number":    `integral ("." [0-9]+)? ([eE] [-+]? [0-9]{1,4})? space`,
	"boolean":   `("true" | "false") space`,
	"null":      `"null" space`,
	"value":     `object | array | string | number | boolean | null`,
	"object":    `"{" space ( string ":" space value ("," space string ":" space value)* )? "}" space`,
	"array":     `"[" space ( value ("," space value)* )? "]" space`,
	"date":      `[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )`,
	"time":      `([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )`,
	"date-time": `date "T" time`,
	"uuid":      `[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}`,
}

// primitiveDeps lists the rules each primitive refers to.
var primitiveDeps = map[string][]string{
	"string":    {"char", "space"},
	"integral":  nil,
	"integer":   {"integral", "space"},
	"number":    {"integral", "space"},
	"boolean":   {"space"},
	"null":      {"space"},
	"value":     {"object", "array", "string", "number", "boolean", "null"},
	"object":    {"space", "string", "value"},
	"array":     {"space", "value"},
	"date-time": {"date", "time"},
}

var ignoredKeywords = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true,
	"default": true, "examples": true, "$defs": true, "definitions": true, "deprecated": true,
	"readOnly": true, "writeOnly": true,
}

var supportedKeywords = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true,
	"items": true, "prefixItems": true, "minItems": true, "maxItems": true, "enum": true,
	"const": true, "anyOf": true, "oneOf": true, "$ref": true, "minLength": true,
	"maxLength": true, "format": true,
}

type grammarBuilder struct {
	root  *jnode
	rules map[string]string
	refs  map[string]string // $ref -> rule name (set before visiting, for recursion)
}

func (g *grammarBuilder) String() string {
	names := make([]string, 0, len(g.rules))
	for n := range g.rules {
		if n != "root" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "root ::= %s\n", g.rules["root"])
	for _, n := range names {
		fmt.Fprintf(&b, "%s ::= %s\n", n, g.rules[n])
	}
	return b.String()
}

// use adds a primitive rule (and what it needs) and returns its name.
func (g *grammarBuilder) use(name string) string {
	if _, ok := g.rules[name]; ok {
		return name
	}
	g.rules[name] = primitiveRules[name]
	for _, d := range primitiveDeps[name] {
		g.use(d)
	}
	return name
}

var ruleNameBad = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// add stores body under a fresh rule name derived from hint.
func (g *grammarBuilder) add(hint, body string) string {
	base := strings.Trim(ruleNameBad.ReplaceAllString(hint, "-"), "-")
	if base == "" || base == "root" {
		base = "r"
	}
	name := base
	for i := 1; ; i++ {
		if _, taken := g.rules[name]; !taken {
			if _, prim := primitiveRules[name]; !prim {
				break
			}
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
	g.rules[name] = body
	return name
}

// literal quotes s as a GBNF string literal.
func literal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// jsonLiteral is the grammar for exactly the JSON value v.
func (g *grammarBuilder) jsonLiteral(v *jnode) string {
	var buf bytes.Buffer
	v.marshal(&buf)
	return literal(buf.String()) + " " + g.use("space")
}

// visit returns the grammar expression for schema s; name hints rule names.
func (g *grammarBuilder) visit(s *jnode, name string) (string, error) {
	switch s.kind {
	case jBool:
		if s.b {
			return g.use("value"), nil
		}
		return "", fmt.Errorf("%s: the schema false admits nothing", name)
	case jObject:
	default:
		return "", fmt.Errorf("%s: a schema must be an object or a boolean", name)
	}
	for _, k := range s.keys {
		if !ignoredKeywords[k] && !supportedKeywords[k] {
			return "", fmt.Errorf("%s: keyword %q is not supported (write the grammar yourself with --grammar)", name, k)
		}
	}
	if ref := s.get("$ref"); ref != nil {
		if ref.kind != jString {
			return "", fmt.Errorf("%s: $ref must be a string", name)
		}
		return g.ref(ref.str)
	}
	if c := s.get("const"); c != nil {
		return g.jsonLiteral(c), nil
	}
	if e := s.get("enum"); e != nil {
		if e.kind != jArray || len(e.arr) == 0 {
			return "", fmt.Errorf("%s: enum must be a non-empty array", name)
		}
		alts := make([]string, len(e.arr))
		for i, v := range e.arr {
			alts[i] = g.jsonLiteral(v)
		}
		return "(" + strings.Join(alts, " | ") + ")", nil
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if a := s.get(kw); a != nil {
			if a.kind != jArray || len(a.arr) == 0 {
				return "", fmt.Errorf("%s: %s must be a non-empty array", name, kw)
			}
			alts := make([]string, len(a.arr))
			for i, sub := range a.arr {
				body, err := g.visit(sub, fmt.Sprintf("%s-%d", name, i))
				if err != nil {
					return "", err
				}
				alts[i] = g.add(fmt.Sprintf("%s-%d", name, i), body)
			}
			return "(" + strings.Join(alts, " | ") + ")", nil
		}
	}
	t := s.get("type")
	if t == nil {
		switch {
		case s.get("properties") != nil || s.get("additionalProperties") != nil:
			return g.object(s, name)
		case s.get("items") != nil || s.get("prefixItems") != nil:
			return g.array(s, name)
		}
		return g.use("value"), nil
	}
	var types []string
	switch t.kind {
	case jString:
		types = []string{t.str}
	case jArray:
		for _, v := range t.arr {
			if v.kind != jString {
				return "", fmt.Errorf("%s: type list must hold strings", name)
			}
			types = append(types, v.str)
		}
	default:
		return "", fmt.Errorf("%s: type must be a string or a list", name)
	}
	alts := make([]string, 0, len(types))
	for _, ty := range types {
		body, err := g.typed(s, ty, name)
		if err != nil {
			return "", err
		}
		alts = append(alts, body)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return "(" + strings.Join(alts, " | ") + ")", nil
}

func (g *grammarBuilder) typed(s *jnode, ty, name string) (string, error) {
	switch ty {
	case "object":
		return g.object(s, name)
	case "array":
		return g.array(s, name)
	case "string":
		return g.stringRule(s, name)
	case "integer", "number", "boolean", "null":
		return g.use(ty), nil
	}
	return "", fmt.Errorf("%s: unknown type %q", name, ty)
}

func nonNegInt(s *jnode, key, name string) (int, bool, error) {
	v := s.get(key)
	if v == nil {
		return 0, false, nil
	}
	if v.kind != jNumber {
		return 0, false, fmt.Errorf("%s: %s must be a number", name, key)
	}
	n, err := strconv.Atoi(v.num.String())
	if err != nil || n < 0 || n > 100000 {
		return 0, false, fmt.Errorf("%s: %s must be an integer in [0, 100000]", name, key)
	}
	return n, true, nil
}

// repeat is item repeated between lo and hi times (hi < 0: unbounded),
// separated by sep when sep is not empty.
func repeat(item, sep string, lo, hi int) string {
	if sep == "" {
		switch {
		case hi == 0:
			return ""
		case hi < 0 && lo == 0:
			return item + "*"
		case hi < 0 && lo == 1:
			return item + "+"
		case hi < 0:
			return fmt.Sprintf("%s{%d,}", item, lo)
		case lo == hi:
			return fmt.Sprintf("%s{%d}", item, lo)
		}
		return fmt.Sprintf("%s{%d,%d}", item, lo, hi)
	}
	if hi == 0 {
		return ""
	}
	rest := repeat("("+sep+" "+item+")", "", max(lo-1, 0), hiMinus1(hi))
	body := item + " " + rest
	if lo == 0 {
		return "(" + body + ")?"
	}
	return body
}

func hiMinus1(hi int) int {
	if hi < 0 {
		return -1
	}
	return hi - 1
}

func (g *grammarBuilder) stringRule(s *jnode, name string) (string, error) {
	if f := s.get("format"); f != nil {
		switch f.str {
		case "date", "time", "date-time", "uuid":
			return `"\"" ` + g.use(f.str) + ` "\"" ` + g.use("space"), nil
		}
		return "", fmt.Errorf("%s: string format %q is not supported", name, f.str)
	}
	lo, _, err := nonNegInt(s, "minLength", name)
	if err != nil {
		return "", err
	}
	hi, hasHi, err := nonNegInt(s, "maxLength", name)
	if err != nil {
		return "", err
	}
	if !hasHi {
		if lo == 0 {
			return g.use("string"), nil
		}
		hi = -1
	} else if hi < lo {
		return "", fmt.Errorf("%s: maxLength %d < minLength %d", name, hi, lo)
	}
	return `"\"" ` + repeat(g.use("char"), "", lo, hi) + ` "\"" ` + g.use("space"), nil
}

func (g *grammarBuilder) array(s *jnode, name string) (string, error) {
	lo, _, err := nonNegInt(s, "minItems", name)
	if err != nil {
		return "", err
	}
	hi, hasHi, err := nonNegInt(s, "maxItems", name)
	if err != nil {
		return "", err
	}
	if !hasHi {
		hi = -1
	} else if hi < lo {
		return "", fmt.Errorf("%s: maxItems %d < minItems %d", name, hi, lo)
	}
	sp := g.use("space")
	if p := s.get("prefixItems"); p != nil {
		if p.kind != jArray {
			return "", fmt.Errorf("%s: prefixItems must be an array", name)
		}
		parts := make([]string, len(p.arr))
		for i, sub := range p.arr {
			body, err := g.visit(sub, fmt.Sprintf("%s-%d", name, i))
			if err != nil {
				return "", err
			}
			parts[i] = g.add(fmt.Sprintf("%s-%d", name, i), body)
		}
		return `"[" ` + sp + ` ` + strings.Join(parts, ` "," `+sp+` `) + ` "]" ` + sp, nil
	}
	item := g.use("value")
	if it := s.get("items"); it != nil {
		body, err := g.visit(it, name+"-item")
		if err != nil {
			return "", err
		}
		item = g.add(name+"-item", body)
	}
	return `"[" ` + sp + ` ` + repeat(item, `"," `+sp, lo, hi) + ` "]" ` + sp, nil
}

func (g *grammarBuilder) object(s *jnode, name string) (string, error) {
	sp := g.use("space")
	props := s.get("properties")
	if props != nil && props.kind != jObject {
		return "", fmt.Errorf("%s: properties must be an object", name)
	}
	required := map[string]bool{}
	if r := s.get("required"); r != nil {
		if r.kind != jArray {
			return "", fmt.Errorf("%s: required must be an array", name)
		}
		for _, v := range r.arr {
			required[v.str] = true
		}
	}
	var req, opt []string // "key": value expressions
	if props != nil {
		for i, k := range props.keys {
			body, err := g.visit(props.vals[i], name+"-"+k)
			if err != nil {
				return "", err
			}
			kv := g.add(name+"-"+k+"-kv", literal(strconvQuote(k))+" "+sp+` ":" `+sp+" "+body)
			if required[k] {
				req = append(req, kv)
			} else {
				opt = append(opt, kv)
			}
		}
	}
	for k := range required {
		if props.get(k) == nil {
			return "", fmt.Errorf("%s: required property %q has no schema in properties", name, k)
		}
	}
	// Extra keys: additionalProperties, defaulting to none when properties
	// are listed and to anything when they are not.
	add := s.get("additionalProperties")
	extra := ""
	switch {
	case add == nil && props == nil, add != nil && add.kind == jBool && add.b:
		extra = g.add(name+"-extra-kv", g.use("string")+` ":" `+sp+" "+g.use("value"))
	case add != nil && add.kind == jObject:
		body, err := g.visit(add, name+"-extra")
		if err != nil {
			return "", err
		}
		extra = g.add(name+"-extra-kv", g.use("string")+` ":" `+sp+" "+body)
	}
	if extra != "" {
		opt = append(opt, repeat(extra, `"," `+sp, 1, -1))
	}
	comma := `"," ` + sp + ` `
	body := strings.Join(req, " "+comma)
	switch {
	case len(opt) == 0:
	case len(req) > 0:
		for _, o := range opt {
			body += " (" + comma + o + ")?"
		}
	default:
		// No required key: the first key present has no comma before it.
		alts := make([]string, len(opt))
		for i := range opt {
			alt := opt[i]
			for _, o := range opt[i+1:] {
				alt += " (" + comma + o + ")?"
			}
			alts[i] = alt
		}
		body = "(" + strings.Join(alts, " | ") + ")?"
	}
	return `"{" ` + sp + ` ` + body + ` "}" ` + sp, nil
}

func strconvQuote(k string) string {
	b, _ := json.Marshal(k)
	return string(b)
}

// ref resolves a local reference into a rule (recursion through the refs
// map: the rule name exists before its body is built).
func (g *grammarBuilder) ref(ref string) (string, error) {
	if name, ok := g.refs[ref]; ok {
		return name, nil
	}
	if ref != "#" && !strings.HasPrefix(ref, "#/") {
		return "", fmt.Errorf("$ref %q: only local references (#/...) are supported", ref)
	}
	target := g.root
	if ref != "#" {
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
			target = target.get(part)
			if target == nil {
				return "", fmt.Errorf("$ref %q: nothing there", ref)
			}
		}
	}
	hint := "ref-" + ref[strings.LastIndex(ref, "/")+1:]
	name := g.add(hint, "")
	g.refs[ref] = name
	body, err := g.visit(target, hint)
	if err != nil {
		return "", err
	}
	g.rules[name] = body
	return name, nil
}
