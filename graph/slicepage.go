package graph

import "github.com/ipa-dev/ipa/internal/ipa"

// slicePage picks the Relay page [from, to) of a list held whole in memory
// (a task's messages), whose cursors are its items' ids: first after after,
// or last before before. An unknown cursor is BAD_USER_INPUT.
func slicePage(n int, id func(int) string, first *int, after *string, last *int, before *string) (int, int, error) {
	if first != nil && last != nil {
		return 0, 0, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Give first or last, not both.")
	}
	find := func(c string) (int, error) {
		for i := 0; i < n; i++ {
			if id(i) == c {
				return i, nil
			}
		}
		return 0, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Unknown cursor %q.", c)
	}
	from, to := 0, n
	if after != nil {
		i, err := find(*after)
		if err != nil {
			return 0, 0, err
		}
		from = i + 1
	}
	if before != nil {
		i, err := find(*before)
		if err != nil {
			return 0, 0, err
		}
		to = min(to, i)
	}
	for _, v := range []*int{first, last} {
		if v != nil && (*v < 1 || *v > 1000) {
			return 0, 0, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "first and last must be between 1 and 1000.")
		}
	}
	if from > to {
		from = to
	}
	switch {
	case first != nil:
		to = min(to, from+*first)
	case last != nil:
		from = max(from, to-*last)
	default:
		to = min(to, from+100)
	}
	return from, to, nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
