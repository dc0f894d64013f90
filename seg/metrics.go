package seg

import (
	"fmt"
	"io"
	"strings"
)

// Confusion is a confusion matrix over the whole data set: Counts[t][p] is
// the number of pixels of true class t predicted as p. Ignored pixels are not
// counted. Scores computed from one matrix over all pixels (not averaged per
// image) are what MMSegmentation's IoUMetric and the CamVid literature report.
type Confusion struct {
	K      int
	Counts [][]int64
}

// NewConfusion makes an empty k x k matrix.
func NewConfusion(k int) *Confusion {
	c := &Confusion{K: k, Counts: make([][]int64, k)}
	for i := range c.Counts {
		c.Counts[i] = make([]int64, k)
	}
	return c
}

// Add counts one prediction against its truth, pixel by pixel; truth values
// equal to ignore, or outside 0..K-1, are skipped.
func (c *Confusion) Add(pred, truth []int32, ignore int) error {
	if len(pred) != len(truth) {
		return fmt.Errorf("confusion: %d predicted pixels for %d labelled", len(pred), len(truth))
	}
	for i, t := range truth {
		if int(t) == ignore || t < 0 || int(t) >= c.K {
			continue
		}
		p := pred[i]
		if p < 0 || int(p) >= c.K {
			return fmt.Errorf("confusion: predicted class %d out of range", p)
		}
		c.Counts[t][p]++
	}
	return nil
}

// Merge adds another matrix of the same size.
func (c *Confusion) Merge(o *Confusion) {
	for t := range c.Counts {
		for p := range c.Counts[t] {
			c.Counts[t][p] += o.Counts[t][p]
		}
	}
}

// Scores are the metrics of a confusion matrix.
type Scores struct {
	// IoU per class: TP / (TP + FP + FN); NaN-free: -1 where the class is
	// absent from both truth and prediction.
	IoU []float64 `json:"iou"`
	// Dice (F1) per class: 2TP / (2TP + FP + FN); -1 where absent.
	Dice []float64 `json:"dice"`
	// Support is each class's number of true pixels.
	Support []int64 `json:"support"`
	// MeanIoU averages IoU over the classes present in truth or prediction.
	MeanIoU float64 `json:"miou"`
	// MeanDice likewise for Dice.
	MeanDice float64 `json:"mdice"`
	// PixelAccuracy is the fraction of labelled pixels predicted right.
	PixelAccuracy float64 `json:"pixel_accuracy"`
	// Pixels counted.
	Pixels int64 `json:"pixels"`
}

// Scores computes per-class and mean scores.
func (c *Confusion) Scores() Scores {
	s := Scores{IoU: make([]float64, c.K), Dice: make([]float64, c.K), Support: make([]int64, c.K)}
	var correct, total int64
	var present int
	for k := 0; k < c.K; k++ {
		tp := c.Counts[k][k]
		var fn, fp int64
		for j := 0; j < c.K; j++ {
			if j != k {
				fn += c.Counts[k][j]
				fp += c.Counts[j][k]
			}
			total += c.Counts[k][j]
		}
		correct += tp
		s.Support[k] = tp + fn
		if tp+fp+fn == 0 {
			s.IoU[k], s.Dice[k] = -1, -1
			continue
		}
		present++
		s.IoU[k] = float64(tp) / float64(tp+fp+fn)
		s.Dice[k] = 2 * float64(tp) / float64(2*tp+fp+fn)
		s.MeanIoU += s.IoU[k]
		s.MeanDice += s.Dice[k]
	}
	if present > 0 {
		s.MeanIoU /= float64(present)
		s.MeanDice /= float64(present)
	}
	s.Pixels = total
	if total > 0 {
		s.PixelAccuracy = float64(correct) / float64(total)
	}
	return s
}

// Map is the scores as flat metrics for metrics.jsonl: miou, mdice,
// pixel_accuracy and iou_<class> per class.
func (s Scores) Map(names []string) map[string]float64 {
	m := map[string]float64{"miou": s.MeanIoU, "mdice": s.MeanDice, "pixel_accuracy": s.PixelAccuracy}
	for k, v := range s.IoU {
		if v >= 0 {
			m["iou_"+className(names, k)] = v
		}
	}
	return m
}

func className(names []string, k int) string {
	if k < len(names) && names[k] != "" {
		return strings.ReplaceAll(names[k], " ", "_")
	}
	return fmt.Sprintf("class%d", k)
}

// WriteTable prints per-class IoU, Dice and support and the means.
func (s Scores) WriteTable(w io.Writer, names []string) {
	fmt.Fprintf(w, "%-16s %8s %8s %12s\n", "class", "IoU", "Dice", "pixels")
	for k := range s.IoU {
		if s.IoU[k] < 0 {
			fmt.Fprintf(w, "%-16s %8s %8s %12d\n", className(names, k), "-", "-", s.Support[k])
			continue
		}
		fmt.Fprintf(w, "%-16s %8.4f %8.4f %12d\n", className(names, k), s.IoU[k], s.Dice[k], s.Support[k])
	}
	fmt.Fprintf(w, "%-16s %8.4f %8.4f %12d\n", "mean", s.MeanIoU, s.MeanDice, s.Pixels)
	fmt.Fprintf(w, "pixel accuracy %.4f\n", s.PixelAccuracy)
}

// RowNormalized is the matrix with each true-class row divided by its sum
// (the fraction of that class's pixels predicted as each class).
func (c *Confusion) RowNormalized() [][]float64 {
	out := make([][]float64, c.K)
	for t := range c.Counts {
		out[t] = make([]float64, c.K)
		var sum int64
		for _, v := range c.Counts[t] {
			sum += v
		}
		if sum == 0 {
			continue
		}
		for p, v := range c.Counts[t] {
			out[t][p] = float64(v) / float64(sum)
		}
	}
	return out
}
