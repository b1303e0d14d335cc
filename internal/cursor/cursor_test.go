package cursor

import (
	"strings"
	"testing"
)

type key struct {
	T  int64  `json:"t"`
	ID string `json:"id"`
}

func TestRoundTrip(t *testing.T) {
	c := New([]byte("0123456789abcdef0123456789abcdef"))
	s, err := c.Encode("q1", key{T: 42, ID: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	var got key
	if err := c.Decode("q1", s, &got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got != (key{T: 42, ID: "abc"}) {
		t.Fatalf("got %+v", got)
	}
}

func TestRejects(t *testing.T) {
	c := New([]byte("0123456789abcdef0123456789abcdef"))
	other := New([]byte("fedcba9876543210fedcba9876543210"))
	good, _ := c.Encode("q1", key{T: 1, ID: "x"})
	forged, _ := other.Encode("q1", key{T: 1, ID: "x"})
	flipped := []byte(good)
	flipped[3] ^= 1
	cases := map[string]struct{ query, cursor string }{
		"OtherQuery": {"q2", good},
		"OtherKey":   {"q1", forged},
		"Flipped":    {"q1", string(flipped)},
		"Empty":      {"q1", ""},
		"NotBase64":  {"q1", "!!!"},
		"Short":      {"q1", "YWJj"},
		"Huge":       {"q1", strings.Repeat("A", 5000)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var k key
			if err := c.Decode(tc.query, tc.cursor, &k); err != ErrInvalid {
				t.Fatalf("Decode = %v, want ErrInvalid", err)
			}
		})
	}
}

// FuzzDecode checks that no input makes Decode panic or accept a cursor this
// codec did not sign.
func FuzzDecode(f *testing.F) {
	c := New([]byte("0123456789abcdef0123456789abcdef"))
	good, _ := c.Encode("q", key{T: 7, ID: "seed"})
	for _, s := range []string{good, "", "eyJ2IjoxfQ", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", good[:len(good)-1] + "B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var k key
		err := c.Decode("q", s, &k)
		if err == nil && s != good {
			// Any other accepted cursor must re-encode to itself: it was signed by us.
			again, _ := c.Encode("q", k)
			if again != s {
				t.Fatalf("accepted a cursor that was not signed: %q", s)
			}
		}
	})
}
