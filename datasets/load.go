package datasets

import "fmt"

// LoadImage decodes one image file into CHW float32 in [0,1], resized to
// opt's size (required here).
func LoadImage(path string, opt ImageOptions) ([]float32, error) {
	opt, err := opt.resolve()
	if err != nil {
		return nil, err
	}
	if opt.Height == 0 {
		return nil, fmt.Errorf("load %s: a size is needed", path)
	}
	return decodeImage(path, opt, "")
}
