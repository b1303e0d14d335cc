package ipacli_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	gqlast "github.com/vektah/gqlparser/v2/ast"
	gqlparse "github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
)

// TestDocumentsValidAgainstSchema validates every GraphQL operation the
// commands send against schema/*.graphqls, the way the server does: a field,
// argument or type the schema does not have (renamed, misspelt, removed)
// fails here rather than in a user's terminal. The documents are found in
// the package's source, not listed by hand, so a new command's document is
// checked without anyone remembering to add it.
func TestDocumentsValidAgainstSchema(t *testing.T) {
	schema := loadSchema(t)
	docs := packageDocuments(t)
	// Every `ipa task` command sends at least one; far fewer means the search
	// below stopped seeing them.
	if len(docs) < 15 {
		t.Fatalf("found %d GraphQL operations in the package's constants, want every one `ipa task` sends (at least 15)", len(docs))
	}
	for _, d := range docs {
		t.Run(d.name, func(t *testing.T) {
			doc, err := gqlparse.ParseQuery(&gqlast.Source{Name: d.name, Input: d.text})
			if err != nil {
				t.Fatalf("%s does not parse: %v\n%s", d.name, err, d.text)
			}
			if n := len(doc.Operations); n != 1 {
				t.Fatalf("%s has %d operations; the client sends no operation name, so it needs exactly one", d.name, n)
			}
			for _, e := range validator.ValidateWithRules(schema, doc, nil) {
				t.Errorf("%s: %s", d.name, e.Message)
			}
		})
	}
}

// TestDocumentSearchSeesMisspeltField proves the search and the validation
// together fail on a misspelt field: it breaks one of the documents found
// and expects the validator to refuse it.
func TestDocumentSearchSeesMisspeltField(t *testing.T) {
	schema := loadSchema(t)
	docs := packageDocuments(t)
	i := slices.IndexFunc(docs, func(d document) bool { return strings.Contains(d.text, "createTask(") })
	if i < 0 {
		t.Fatal("the create-task mutation was not among the documents found")
	}
	broken := strings.Replace(docs[i].text, "createTask(", "createTsak(", 1)
	doc, err := gqlparse.ParseQuery(&gqlast.Source{Input: broken})
	if err != nil {
		t.Fatal(err)
	}
	errs := validator.ValidateWithRules(schema, doc, nil)
	if len(errs) == 0 || !strings.Contains(errs.Error(), "createTsak") {
		t.Fatalf("a misspelt field passed validation: %v", errs)
	}
}

func loadSchema(t *testing.T) *gqlast.Schema {
	t.Helper()
	files, err := filepath.Glob("../../../schema/*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files: %v", err)
	}
	var sources []*gqlast.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, &gqlast.Source{Name: f, Input: string(b)})
	}
	schema, err := gqlparser.LoadSchema(sources...)
	if err != nil {
		t.Fatalf("load schema: %v", err)
	}
	return schema
}

type document struct{ name, text string }

// An operation as the client sends it: a keyword, an optional name, then
// variables or a selection set; or the query shorthand, a bare selection
// set. Help text that merely starts with "query" does not match.
var (
	operationRE = regexp.MustCompile(`^(?:(?:query|mutation|subscription)\s*(?:[_A-Za-z][_0-9A-Za-z]*)?\s*[({]|\{\s*[_A-Za-z][_0-9A-Za-z]*\s*[({:}])`)
	fragmentRE  = regexp.MustCompile(`^fragment\s+[_A-Za-z][_0-9A-Za-z]*\s+on\s`)
)

// packageDocuments returns every string constant of the package (its
// non-test sources) whose value is a GraphQL operation, with constants
// concatenated as the compiler would. It fails the test when a string
// literal outside a constant declaration looks like a document or a
// fragment: such a document would be sent without ever being validated.
func packageDocuments(t *testing.T) []document {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]ast.Expr{}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						consts[name.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	if len(files) == 0 {
		t.Fatal("no sources found; the test must run in the package's directory")
	}

	// Every literal outside a package-level constant declaration, a
	// function's own constants included (the search below does not see
	// those).
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if gd, ok := n.(*ast.GenDecl); ok && gd.Tok == token.CONST {
				if slices.Contains(f.Decls, ast.Decl(gd)) {
					return false
				}
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			s = strings.TrimSpace(s)
			if operationRE.MatchString(s) || fragmentRE.MatchString(s) {
				t.Errorf("%s: a GraphQL document outside a package-level constant is never validated; make it a constant:\n%s",
					fset.Position(lit.Pos()), s)
			}
			return true
		})
	}

	var docs []document
	for name, expr := range consts {
		text, ok := constString(consts, expr, 0)
		if ok && operationRE.MatchString(strings.TrimSpace(text)) {
			docs = append(docs, document{name, text})
		}
	}
	slices.SortFunc(docs, func(a, b document) int { return strings.Compare(a.name, b.name) })
	return docs
}

// constString evaluates a constant string expression: literals, other
// constants of the package, and + between them.
func constString(consts map[string]ast.Expr, e ast.Expr, depth int) (string, bool) {
	if depth > 20 {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		v, ok := consts[e.Name]
		if !ok {
			return "", false
		}
		return constString(consts, v, depth+1)
	case *ast.ParenExpr:
		return constString(consts, e.X, depth+1)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok := constString(consts, e.X, depth+1)
		if !ok {
			return "", false
		}
		y, ok := constString(consts, e.Y, depth+1)
		return x + y, ok
	}
	return "", false
}
