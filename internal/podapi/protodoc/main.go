// Command protodoc renders the plugin protocol reference of docs/runtimes.md
// from internal/podapi/proto/runtime.proto: every service, RPC, message and
// field with the comments the .proto file gives them. It reads a
// FileDescriptorSet with source info (protoc --include_source_info
// --descriptor_set_out) on stdin and replaces the text between the reference
// markers of the file named by -doc. Run by `go generate ./internal/podapi`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Markers around the generated part of the guide.
const (
	Begin = "<!-- BEGIN PROTOCOL REFERENCE: generated from internal/podapi/proto/runtime.proto by internal/podapi/protodoc; do not edit -->"
	End   = "<!-- END PROTOCOL REFERENCE -->"
)

func main() {
	doc := flag.String("doc", "", "markdown file whose reference section is replaced")
	flag.Parse()
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	ref, err := Render(raw)
	if err != nil {
		log.Fatal(err)
	}
	if *doc == "" {
		fmt.Print(ref)
		return
	}
	b, err := os.ReadFile(*doc)
	if err != nil {
		log.Fatal(err)
	}
	out, err := Splice(b, ref)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*doc, out, 0o644); err != nil {
		log.Fatal(err)
	}
}

// Splice replaces the text between the markers of doc with ref.
func Splice(doc []byte, ref string) ([]byte, error) {
	i := bytes.Index(doc, []byte(Begin))
	j := bytes.Index(doc, []byte(End))
	if i < 0 || j < i {
		return nil, fmt.Errorf("the reference markers are missing")
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(Begin)])
	out.WriteString("\n\n")
	out.WriteString(ref)
	out.WriteString("\n")
	out.Write(doc[j:])
	return out.Bytes(), nil
}

// Render is the reference for runtime.proto, found in the descriptor set.
func Render(set []byte) (string, error) {
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(set, &fds); err != nil {
		return "", err
	}
	files, err := protodesc.NewFiles(&fds)
	if err != nil {
		return "", err
	}
	fd, err := files.FindFileByPath("runtime.proto")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	locs := fd.SourceLocations()
	comment := func(d protoreflect.Descriptor) string {
		l := locs.ByDescriptor(d)
		parts := []string{strings.TrimSpace(l.LeadingComments), strings.TrimSpace(l.TrailingComments)}
		var keep []string
		for _, p := range parts {
			if p != "" {
				keep = append(keep, strings.Join(strings.Fields(p), " "))
			}
		}
		return strings.Join(keep, " ")
	}
	fmt.Fprintf(&b, "Package `%s`.\n", fd.Package())
	svcs := fd.Services()
	for i := 0; i < svcs.Len(); i++ {
		s := svcs.Get(i)
		fmt.Fprintf(&b, "\n### service %s\n\n", s.Name())
		if c := comment(s); c != "" {
			fmt.Fprintf(&b, "%s\n\n", c)
		}
		fmt.Fprintf(&b, "| RPC | Request | Response | Notes |\n|---|---|---|---|\n")
		ms := s.Methods()
		for k := 0; k < ms.Len(); k++ {
			m := ms.Get(k)
			fmt.Fprintf(&b, "| `%s` | [%s](#%s) | [%s](#%s) | %s |\n", m.Name(),
				m.Input().Name(), anchor(m.Input().Name()), m.Output().Name(), anchor(m.Output().Name()), cell(comment(m)))
		}
	}
	b.WriteString("\n### Messages\n")
	msgs := fd.Messages()
	for i := 0; i < msgs.Len(); i++ {
		m := msgs.Get(i)
		fmt.Fprintf(&b, "\n#### %s\n\n", m.Name())
		if c := comment(m); c != "" {
			fmt.Fprintf(&b, "%s\n\n", c)
		}
		fields := m.Fields()
		if fields.Len() == 0 {
			b.WriteString("No fields.\n")
			continue
		}
		fmt.Fprintf(&b, "| # | Field | Type | Notes |\n|---|---|---|---|\n")
		for k := 0; k < fields.Len(); k++ {
			f := fields.Get(k)
			fmt.Fprintf(&b, "| %d | `%s` | %s | %s |\n", f.Number(), f.Name(), typeName(f), cell(comment(f)))
		}
	}
	return b.String(), nil
}

func typeName(f protoreflect.FieldDescriptor) string {
	t := f.Kind().String()
	switch f.Kind() {
	case protoreflect.MessageKind:
		t = fmt.Sprintf("[%s](#%s)", f.Message().Name(), anchor(f.Message().Name()))
	case protoreflect.EnumKind:
		t = string(f.Enum().Name())
	}
	if f.Cardinality() == protoreflect.Repeated {
		t = "repeated " + t
	}
	return t
}

func anchor(n protoreflect.Name) string { return strings.ToLower(string(n)) }

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
