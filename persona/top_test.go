package persona

import (
	"testing"

	"github.com/pplug/pplug/persona/profile"
)

func TestTopAnyK(t *testing.T) {
	u := &History{Items: []profile.Item{{ID: "a"}, {ID: "b"}, {ID: "c"}}}
	w := []float32{0.2, 0.5, 0.3}
	for _, tc := range []struct{ k, want int }{{-1, 0}, {0, 0}, {1, 1}, {3, 3}, {4, 3}, {1 << 40, 3}} {
		top := u.Top(w, tc.k)
		if len(top) != tc.want {
			t.Fatalf("Top(k=%d) gave %d items, want %d", tc.k, len(top), tc.want)
		}
		if tc.want > 0 && (top[0].Item.ID != "b" || top[0].Weight != 0.5) {
			t.Fatalf("Top(k=%d)[0] = %+v, want item b", tc.k, top[0])
		}
	}
}
