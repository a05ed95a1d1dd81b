package kernels

// An independent float64 reference of the two operations, written from the
// method's definition (PAPER.md) with no code shared with the backends.

import (
	"math"
	"math/rand/v2"
)

// refNormalize scales v to unit length in place (zero stays zero).
func refNormalize(v []float64) {
	big := 0.0
	for _, x := range v {
		big = math.Max(big, math.Abs(x))
	}
	if big == 0 {
		return
	}
	ss := 0.0
	for _, x := range v {
		ss += (x / big) * (x / big)
	}
	norm := big * math.Sqrt(ss)
	for j := range v {
		v[j] /= norm
	}
}

// refProject computes scale * (W2 gelu(W1 x + b1) + b2) per row in float64.
func refProject(p *Projector, in []float32, n int) []float64 {
	out := make([]float64, n*p.DOut)
	h := make([]float64, p.DOut)
	for r := 0; r < n; r++ {
		x := in[r*p.DIn : (r+1)*p.DIn]
		for o := 0; o < p.DOut; o++ {
			acc := float64(p.B1[o])
			for i := 0; i < p.DIn; i++ {
				acc += float64(p.W1[o*p.DIn+i]) * float64(x[i])
			}
			h[o] = acc * 0.5 * (1 + math.Erf(acc/math.Sqrt(2)))
		}
		for o := 0; o < p.DOut; o++ {
			acc := float64(p.B2[o])
			for i := 0; i < p.DOut; i++ {
				acc += float64(p.W2[o*p.DOut+i]) * h[i]
			}
			out[r*p.DOut+o] = acc * float64(p.Scale)
		}
	}
	return out
}

// refUser is one user of refAggregate.
type refUser struct {
	keys, values []float32 // [n][dKey], [n][dVal]
	n            int
}

// refAggregate returns out [B][dVal] and the weights of every item, user after user.
func refAggregate(users []refUser, queries []float32, dKey, dVal int, tau float64) (out, weights []float64) {
	out = make([]float64, len(users)*dVal)
	for b, u := range users {
		q := make([]float64, dKey)
		for j := range q {
			q[j] = float64(queries[b*dKey+j])
		}
		refNormalize(q)
		s := make([]float64, u.n)
		for i := 0; i < u.n; i++ {
			k := make([]float64, dKey)
			for j := range k {
				k[j] = float64(u.keys[i*dKey+j])
			}
			refNormalize(k)
			for j := range k {
				s[i] += q[j] * k[j]
			}
			s[i] /= tau
		}
		// softmax, max-subtracted
		m := math.Inf(-1)
		for _, x := range s {
			m = math.Max(m, x)
		}
		z := 0.0
		for i := range s {
			s[i] = math.Exp(s[i] - m)
			z += s[i]
		}
		for i := range s {
			s[i] /= z
			for j := 0; j < dVal; j++ {
				out[b*dVal+j] += s[i] * float64(u.values[i*dVal+j])
			}
		}
		weights = append(weights, s...)
	}
	return out, weights
}

// ---- helpers ----------------------------------------------------------------

func randVec(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func randProjector(r *rand.Rand, dIn, dOut int, scale float32) *Projector {
	return &Projector{
		DIn: dIn, DOut: dOut,
		W1: randVec(r, dOut*dIn, 1/math.Sqrt(float64(dIn))), B1: randVec(r, dOut, 0.1),
		W2: randVec(r, dOut*dOut, 1/math.Sqrt(float64(dOut))), B2: randVec(r, dOut, 0.1),
		Scale: scale,
	}
}

// maxRelErr is max_i |got_i - want_i| / max_i |want_i| (0 when both are all zero).
func maxRelErr(got []float32, want []float64) float64 {
	diff, big := 0.0, 0.0
	for i := range want {
		diff = math.Max(diff, math.Abs(float64(got[i])-want[i]))
		big = math.Max(big, math.Abs(want[i]))
	}
	if math.IsNaN(diff) {
		return math.Inf(1)
	}
	for _, g := range got {
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			return math.Inf(1)
		}
	}
	if big == 0 {
		return diff
	}
	return diff / big
}

func to64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
