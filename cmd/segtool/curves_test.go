package main

import (
	"math"
	"testing"

	"github.com/segtool/segtool/nn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCurvePanels(t *testing.T) {
	hist := []nn.EpochMetrics{
		{"epoch": 1, "train_loss": 1.0, "val_miou": 0.2, "val_mdice": 0.3, "val_pixel_accuracy": 0.8, "val_iou_road": 0.7},
		{"epoch": 2, "train_loss": 0.5, "val_miou": 0.4, "val_mdice": 0.5, "val_pixel_accuracy": 0.9, "val_iou_road": 0.8, "val_iou_traffic_sign": 0.1},
	}
	cfg := &Config{Task: "seg"}
	cfg.Data.Classes = []ClassConfig{{Name: "road", Color: [3]uint8{128, 64, 128}}, {Name: "traffic sign", Color: [3]uint8{1, 2, 3}}, {Name: "never seen"}}
	ps := curvePanels(cfg, hist)
	require.Len(t, ps, 3)
	require.Len(t, ps[0].Series, 1, "no val_loss: only the training loss")
	assert.False(t, ps[0].LogY, "a loss that halves stays on a linear axis")
	assert.Equal(t, []float64{1, 0.5}, ps[0].Series[0].Y)
	assert.Equal(t, []float64{1, 2}, ps[0].Series[0].X)
	require.Len(t, ps[1].Series, 3)
	assert.Equal(t, []float64{0.2, 0.4}, ps[1].Series[0].Y, "mIoU first")
	cls := ps[2].Series
	require.Len(t, cls, 2, "a class with no IoU in any epoch has no line")
	assert.Equal(t, [3]uint8{128, 64, 128}, cls[0].Color, "classes in their own colours")
	assert.Equal(t, "traffic sign", cls[1].Name)
	assert.True(t, math.IsNaN(cls[1].Y[0]), "an epoch without the class is a gap")
	assert.Equal(t, 0.1, cls[1].Y[1])

	ae := curvePanels(&Config{Task: "ae"}, []nn.EpochMetrics{{"epoch": 1, "train_loss": 0.09, "val_loss": 0.02}, {"epoch": 2, "train_loss": 0.008, "val_loss": 0.009}})
	assert.True(t, ae[0].LogY, "a loss falling tenfold is drawn on a log axis")

	vae := curvePanels(&Config{Task: "vae"}, []nn.EpochMetrics{{"epoch": 1, "train_loss": 120, "val_neg_elbo": 110, "val_recon": 90, "val_kl": 20}})
	require.Len(t, vae, 2)
	assert.Len(t, vae[0].Series, 2)
	assert.Len(t, vae[1].Series, 2)
}
