//! A compact summary of a frame, and how far apart two frames look.
//!
//! Two measures, for two kinds of change. [`Signature::content_change`] compares
//! colours cell by cell (hue, saturation and value of a coarse grid, like
//! PySceneDetect's detect-content): it sees a cut between two dark shots of one
//! palette, where the picture moved but the colours stayed. A colour histogram,
//! [`Signature::palette_change`], ignores where things are: a handheld camera
//! moving over one scene keeps it nearly still, while a dissolve into another
//! scene moves it all the way.

/// The grid is at most this many cells wide and high.
const GRID_W: usize = 32;
const GRID_H: usize = 18;
/// 16 hues × 4 saturations × 4 values.
const BINS: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Signature {
    /// Hue (degrees), saturation and value (0..=255) of each cell's mean colour.
    cells: Vec<[f32; 3]>,
    histogram: Vec<f32>,
    /// Mean luma, 0..=255.
    pub(super) mean: f32,
    /// Standard deviation of luma.
    spread: f32,
}

impl Signature {
    /// `None` for an empty frame or one shorter than `width × height` pixels.
    pub(super) fn of(width: u32, height: u32, rgb: &[u8]) -> Option<Self> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() / 3 / w < h {
            return None;
        }
        // Every second pixel of every second row is plenty for a summary.
        let (sw, sh) = (w.div_ceil(2), h.div_ceil(2));
        let (gw, gh) = (sw.min(GRID_W), sh.min(GRID_H));
        let mut sums = vec![[0f32; 3]; gw * gh];
        let mut counts = vec![0u32; gw * gh];
        let mut histogram = vec![0f32; BINS];
        let (mut sum, mut sum_sq) = (0f64, 0f64);
        for sy in 0..sh {
            let row = sy * 2 * w;
            let cell_row = sy * gh / sh * gw;
            for sx in 0..sw {
                let i = (row + sx * 2) * 3;
                let (r, g, b) = (rgb[i], rgb[i + 1], rgb[i + 2]);
                let cell = cell_row + sx * gw / sw;
                let s = &mut sums[cell];
                s[0] += r as f32;
                s[1] += g as f32;
                s[2] += b as f32;
                counts[cell] += 1;
                histogram[bin(r, g, b)] += 1.0;
                let luma = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
                sum += luma;
                sum_sq += luma * luma;
            }
        }
        let n = (sw * sh) as f64;
        for v in &mut histogram {
            *v /= n as f32;
        }
        let cells = sums
            .iter()
            .zip(&counts)
            .map(|(s, &c)| {
                let c = c.max(1) as f32;
                hsv(s[0] / c, s[1] / c, s[2] / c)
            })
            .collect();
        let mean = sum / n;
        let spread = (sum_sq / n - mean * mean).max(0.0).sqrt();
        Some(Self { cells, histogram, mean: mean as f32, spread: spread as f32 })
    }

    /// Near-uniform: a black, white or flat frame between shots.
    pub(super) fn is_blank(&self) -> bool {
        self.spread < 6.0
    }

    /// Mean difference of the cells' hue, saturation and value, 0..=255.
    pub(super) fn content_change(&self, other: &Signature) -> f32 {
        if self.cells.len() != other.cells.len() {
            return 255.0;
        }
        let total: f32 = self
            .cells
            .iter()
            .zip(&other.cells)
            .map(|(a, b)| {
                let dh = (a[0] - b[0]).abs();
                // Hue means nothing in a grey or dark cell: it counts as far
                // as both cells have colour.
                let weight = (a[1].min(b[1]).min(a[2]).min(b[2]) * 4.0 / 255.0).min(1.0);
                let hue = dh.min(360.0 - dh) * 255.0 / 180.0 * weight;
                (hue + (a[1] - b[1]).abs() + (a[2] - b[2]).abs()) / 3.0
            })
            .sum();
        total / self.cells.len() as f32
    }

    /// Share of pixels whose colour bin differs, 0..=1.
    pub(super) fn palette_change(&self, other: &Signature) -> f32 {
        self.histogram.iter().zip(&other.histogram).map(|(a, b)| (a - b).abs()).sum::<f32>() / 2.0
    }
}

/// Hue in degrees, saturation and value in 0..=255.
fn hsv(r: f32, g: f32, b: f32) -> [f32; 3] {
    let max = r.max(g).max(b);
    let d = max - r.min(g).min(b);
    if d <= 0.0 {
        return [0.0, 0.0, max];
    }
    let sector = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    [sector * 60.0, d / max * 255.0, max]
}

/// A pixel's histogram bin. Grey and dark pixels share hue 0: their hue is noise.
fn bin(r: u8, g: u8, b: u8) -> usize {
    let max = r.max(g).max(b);
    let d = max - r.min(g).min(b);
    let value = (max >> 6) as usize;
    let saturation = if max == 0 { 0 } else { (d as usize * 255 * 4) / (max as usize * 256) };
    let hue = if saturation == 0 || value == 0 {
        0
    } else {
        ((hsv(r as f32, g as f32, b as f32)[0] * 16.0 / 360.0) as usize).min(15)
    };
    hue * 16 + saturation.min(3) * 4 + value
}
