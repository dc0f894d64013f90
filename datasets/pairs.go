package datasets

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ImageFolderNames and MaskFolderNames are the subfolder names OpenLabelled
// looks for in a data folder, in this order of preference. Treat them as
// read-only.
var (
	ImageFolderNames = []string{"images", "image", "imgs", "img"}
	MaskFolderNames  = []string{"masks", "mask", "labels", "label", "annotations", "annotation", "annot", "gt"}
)

// AnnotSuffixes are what a split folder's name is followed by to name its
// masks' folder (CamVid: train and trainannot). Treat it as read-only.
var AnnotSuffixes = []string{"annot", "_annot", "annots", "_annots", "annotations", "_annotations", "_labels", "labels", "_masks", "masks", "_gt", "_label", "_mask"}

// maskStemSuffixes are endings of mask names that are tried when no image has
// the mask's exact stem ("0001_mask.png" for "0001.jpg"; CamVid's colour
// masks end in _L).
var maskStemSuffixes = []string{"_mask", "-mask", "_masks", "_label", "-label", "_labels", "_gt", "_seg", "_annot", "_L"}

// layoutsLookedFor says, in errors, what OpenLabelled can read.
const layoutsLookedFor = "looked for: (1) a folder with images/ and masks/ subfolders (also image/, imgs/; labels/, label/, annotations/) matched by file name; " +
	"(2) a split folder such as CamVid's train/ with trainannot/ beside it (give DIR/train or DIR:train; also val/valannot, test/testannot); " +
	"(3) a list file (.txt or .csv) of \"image mask\" lines"

// pair is one image and its mask.
type pair struct{ image, mask string }

// pairSet is what a labelled spec holds.
type pairSet struct {
	layout         string // for reports: which layout and where
	pairs          []pair
	unpairedImages []string
	unpairedMasks  []string
}

// findPairs finds the image/mask pairs of a spec (see OpenLabelled). It fails
// when no layout fits; it does not fail for zero pairs with unpaired files
// (the caller decides), only when there are no files at all.
func findPairs(spec string) (*pairSet, error) {
	st, err := os.Stat(spec)
	if errors.Is(err, fs.ErrNotExist) {
		if i := strings.LastIndex(spec, ":"); i > 0 && i < len(spec)-1 {
			dir, split := spec[:i], spec[i+1:]
			if st, err := os.Stat(filepath.Join(dir, split)); err == nil && st.IsDir() {
				return findSplit(filepath.Join(dir, split))
			}
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				return nil, fmt.Errorf("labelled data %s: %s has no folder %s/%s", spec, dir, filepath.Base(dir), split)
			}
		}
		return nil, fmt.Errorf("labelled data %s: does not exist; check the path (%s)", spec, layoutsLookedFor)
	}
	if err != nil {
		return nil, fmt.Errorf("labelled data %s: %w", spec, err)
	}
	if !st.IsDir() {
		switch strings.ToLower(filepath.Ext(spec)) {
		case ".txt", ".csv", ".lst", ".list":
			return readPairList(spec)
		}
		return nil, fmt.Errorf("labelled data %s: is a file but not a list of pairs (.txt or .csv); give a folder or a list file (%s)", spec, layoutsLookedFor)
	}
	imgDir, maskDir, err := findSubfolders(spec)
	if err != nil {
		return nil, err
	}
	if imgDir != "" {
		ps, err := pairFolders(imgDir, maskDir)
		if err != nil {
			return nil, err
		}
		ps.layout = fmt.Sprintf("image and mask folders: %s + %s", imgDir, maskDir)
		return ps, nil
	}
	if annot := annotFolder(spec); annot != "" {
		return findSplit(spec)
	}
	if splits := splitFoldersIn(spec); len(splits) > 0 {
		return nil, fmt.Errorf("labelled data %s: holds split folders (%s); give one of them, e.g. %s or %s:%s",
			spec, strings.Join(splits, ", "), filepath.Join(spec, firstWord(splits[0])), spec, firstWord(splits[0]))
	}
	return nil, fmt.Errorf("labelled data %s: no image/mask pairs found; %s", spec, layoutsLookedFor)
}

// firstWord is the split name of a "train+trainannot" description.
func firstWord(s string) string { return strings.SplitN(s, "+", 2)[0] }

// findSplit reads a split folder and its annotation sibling.
func findSplit(dir string) (*pairSet, error) {
	annot := annotFolder(dir)
	if annot == "" {
		return nil, fmt.Errorf("labelled data %s: no mask folder beside it (looked for %s); %s",
			dir, strings.Join(suffixed(filepath.Base(dir)), ", "), layoutsLookedFor)
	}
	ps, err := pairFolders(dir, annot)
	if err != nil {
		return nil, err
	}
	ps.layout = fmt.Sprintf("split folders: %s + %s", dir, annot)
	return ps, nil
}

// suffixed lists the annotation folder names tried for a split name.
func suffixed(base string) []string {
	out := make([]string, len(AnnotSuffixes))
	for i, s := range AnnotSuffixes {
		out[i] = base + s
	}
	return out
}

// annotFolder returns the sibling folder that holds dir's masks, or "".
func annotFolder(dir string) string {
	dir = filepath.Clean(dir)
	base := filepath.Base(dir)
	if base == "." || base == "/" {
		return ""
	}
	for _, name := range suffixed(base) {
		p := filepath.Join(filepath.Dir(dir), name)
		if isDir(p) {
			return p
		}
	}
	return ""
}

// splitFoldersIn lists the split/annotation folder pairs inside dir.
func splitFoldersIn(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if a := annotFolder(filepath.Join(dir, e.Name())); a != "" {
			out = append(out, e.Name()+"+"+filepath.Base(a))
		}
	}
	return out
}

// isDir reports whether p is a folder (following links).
func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// findSubfolders returns dir's image and mask subfolders, or "" for both
// when dir has no image subfolder. An image subfolder without a mask
// subfolder is an error.
func findSubfolders(dir string) (imgDir, maskDir string, err error) {
	pick := func(names []string) (string, error) {
		var found []string
		for _, n := range names {
			p := filepath.Join(dir, n)
			if isDir(p) && hasImages(p) {
				found = append(found, p)
			}
		}
		switch len(found) {
		case 0:
			return "", nil
		case 1:
			return found[0], nil
		}
		return "", fmt.Errorf("labelled data %s: both %s and %s hold images; keep one of them, or list the pairs in a .txt file", dir, found[0], found[1])
	}
	if imgDir, err = pick(ImageFolderNames); err != nil || imgDir == "" {
		return "", "", err
	}
	if maskDir, err = pick(MaskFolderNames); err != nil {
		return "", "", err
	}
	if maskDir == "" {
		return "", "", fmt.Errorf("labelled data %s: has %s but no mask folder with images beside it (looked for %s); put the masks in %s",
			dir, imgDir, strings.Join(MaskFolderNames, "/, ")+"/", filepath.Join(dir, "masks"))
	}
	return imgDir, maskDir, nil
}

// hasImages reports whether dir directly holds at least one image file.
func hasImages(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() && isImageName(e.Name()) {
			return true
		}
	}
	return false
}

// imageFiles lists the image files directly in dir by stem. Two files with
// one stem (a.png and a.jpg) are an error.
func imageFiles(dir string) (stems []string, byStem map[string]string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("labelled data %s: %w", dir, err)
	}
	byStem = map[string]string{}
	for _, e := range entries { // sorted by name
		if !isImageName(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || (e.Type()&fs.ModeSymlink != 0 && isDir(p)) {
			continue
		}
		stem := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		if prev, ok := byStem[stem]; ok {
			return nil, nil, fmt.Errorf("labelled data: %s and %s have the same name but for the extension, so which one pairs is unclear; remove or rename one", prev, p)
		}
		byStem[stem] = p
		stems = append(stems, stem)
	}
	slices.Sort(stems)
	return stems, byStem, nil
}

// pairFolders pairs the images of imgDir with the masks of maskDir by stem,
// trying maskStemSuffixes on masks whose stem matches no image.
func pairFolders(imgDir, maskDir string) (*pairSet, error) {
	imgStems, images, err := imageFiles(imgDir)
	if err != nil {
		return nil, err
	}
	maskStems, masks, err := imageFiles(maskDir)
	if err != nil {
		return nil, err
	}
	if len(imgStems) == 0 && len(maskStems) == 0 {
		return nil, fmt.Errorf("labelled data: %s and %s contain no images (looked for %s); put the images and masks there", imgDir, maskDir, strings.Join(ImageExtensions, " "))
	}
	maskOf := map[string]string{} // image stem -> mask path
	ps := &pairSet{}
	for _, ms := range maskStems {
		target := ""
		if _, ok := images[ms]; ok {
			target = ms
		} else {
			for _, suf := range maskStemSuffixes {
				if s, ok := strings.CutSuffix(ms, suf); ok {
					if _, ok := images[s]; ok {
						target = s
						break
					}
				}
			}
		}
		if target == "" {
			ps.unpairedMasks = append(ps.unpairedMasks, masks[ms])
			continue
		}
		if prev, ok := maskOf[target]; ok {
			return nil, fmt.Errorf("labelled data: image %s has two masks, %s and %s; remove or rename one", images[target], prev, masks[ms])
		}
		maskOf[target] = masks[ms]
	}
	for _, s := range imgStems {
		if m, ok := maskOf[s]; ok {
			ps.pairs = append(ps.pairs, pair{images[s], m})
		} else {
			ps.unpairedImages = append(ps.unpairedImages, images[s])
		}
	}
	return ps, nil
}

// readPairList reads a list file: one "image mask" pair per line, separated
// by a comma, a tab or spaces (in that order of precedence, so names with
// spaces work in CSV and TSV), relative to the list's folder unless
// absolute. Blank lines and lines starting with # are skipped, and so is a
// first line naming no image files (a CSV header such as "image,mask").
func readPairList(path string) (*pairSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("labelled data %s: %w", path, err)
	}
	defer f.Close()
	base := filepath.Dir(path)
	ps := &pairSet{layout: "list file: " + path}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	first := true
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		var fields []string
		switch {
		case strings.Contains(text, ","):
			fields = strings.Split(text, ",")
		case strings.Contains(text, "\t"):
			fields = strings.Split(text, "\t")
		default:
			fields = strings.Fields(text)
		}
		for i := range fields {
			fields[i] = strings.Trim(strings.TrimSpace(fields[i]), `"`)
		}
		isHeader := first && len(fields) == 2 && !isImageName(filepath.Base(fields[0])) && !isImageName(filepath.Base(fields[1]))
		first = false
		if isHeader {
			continue
		}
		if len(fields) != 2 || fields[0] == "" || fields[1] == "" {
			return nil, fmt.Errorf("labelled data %s line %d: %q is not an \"image mask\" pair (want two file names separated by a comma, a tab or spaces)", path, line, text)
		}
		abs := func(p string) string {
			if filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(base, p)
		}
		ps.pairs = append(ps.pairs, pair{abs(fields[0]), abs(fields[1])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("labelled data %s: %w", path, err)
	}
	if len(ps.pairs) == 0 {
		return nil, fmt.Errorf("labelled data %s: the list holds no pairs; write one \"image mask\" pair per line", path)
	}
	return ps, nil
}
