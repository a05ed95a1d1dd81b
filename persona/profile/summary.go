package profile

import (
	"fmt"
	"slices"
	"strings"
)

// SummaryExamples is the number of items Summarize names per reason.
const SummaryExamples = 3

// Summarize groups warnings by reason, in the order each reason first
// occurs: one line per reason with the number of items and the first
// SummaryExamples of them (index, id and line), so that a file of 200,000
// faulty lines gives a few lines of explanation. A reason that only one
// item has, and warnings about no item, are kept as they are.
func Summarize(ws []Warning) []string {
	type group struct {
		reason string
		n      int
		first  []string
		only   string // the warning itself, while it is the group's one
	}
	var groups []*group
	byReason := map[string]*group{}
	for _, w := range ws {
		if w.Index < 0 {
			groups = append(groups, &group{reason: w.Msg})
			continue
		}
		reason := w.Reason
		if reason == "" {
			reason = w.Msg
		}
		g := byReason[reason]
		if g == nil {
			g = &group{reason: reason}
			byReason[reason] = g
			groups = append(groups, g)
		}
		if g.n++; g.n == 1 {
			g.only = w.String()
		}
		if len(g.first) < SummaryExamples {
			g.first = append(g.first, itemName(w.Index, w.ID, w.Line))
		}
	}
	out := make([]string, len(groups))
	for i, g := range groups {
		switch {
		case g.n == 0:
			out[i] = g.reason
		case g.n == 1:
			out[i] = g.only
		default:
			out[i] = fmt.Sprintf("%s: %s (%s)", plural(g.n, "item"), g.reason, examples(g.first, g.n))
		}
	}
	return out
}

// examples lists the first items of a group, with "..." when there are
// more.
func examples(first []string, n int) string {
	s := strings.Join(first, ", ")
	if n > len(first) {
		s += ", ..."
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Kept says what MaxItems left out ("" when every usable item was kept):
// how many of how many usable items were kept and by which rule.
func (p *Profile) Kept() string {
	if len(p.Items) >= p.Usable {
		return ""
	}
	rule := "the last in file order (not every item has a date)"
	if p.ByDate {
		rule = "the most recent by date"
	}
	return fmt.Sprintf("kept %d of %d usable items, %s; %d dropped", len(p.Items), p.Usable, rule, p.Usable-len(p.Items))
}

// noUsableError says why no item of the input is usable: the reasons
// items were skipped and, when the requested fields occur in no item, the
// fields that items have.
func (l *loader) noUsableError() error {
	var skipped []Warning
	for _, w := range l.p.Warnings {
		if w.Skipped {
			skipped = append(skipped, w)
		}
	}
	why := strings.Join(Summarize(skipped), "; ")
	if l.fields != nil && !l.anyFieldSeen() {
		why = fmt.Sprintf("no item has a field %s; fields seen: %s", strings.Join(l.fields, ", "), l.fieldNames())
	}
	return fmt.Errorf("%w (all %d items were skipped: %s)", ErrNoUsableItems, l.seen, why)
}

func (l *loader) anyFieldSeen() bool {
	for _, f := range l.fields {
		if l.fieldsSeen[f] {
			return true
		}
	}
	return false
}

// fieldNames lists the field names seen, in order.
func (l *loader) fieldNames() string {
	names := make([]string, 0, len(l.fieldsSeen))
	for k := range l.fieldsSeen {
		names = append(names, QuoteID(k))
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "none"
	}
	s := strings.Join(names, ", ")
	if len(names) >= maxFieldNames {
		s += ", ..."
	}
	return s
}
