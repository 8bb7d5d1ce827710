//! What prompts learn (the paper's Figure 4): how well a set of prompt vectors separates by
//! task (the Calinski-Harabasz index) and a 2-D projection of them (principal components) to
//! plot. Plain f64 arithmetic over a few hundred vectors of a few hundred numbers.

/// The Calinski-Harabasz index of `points` grouped by `labels` (one label per point):
/// `(B / (k - 1)) / (W / (n - k))`, with B the between-group dispersion (each group's size
/// times its centre's squared distance from the overall centre) and W the within-group one
/// (each point's squared distance from its group's centre). Higher: groups better separated.
/// `None` with fewer than two groups or no more points than groups; infinite when every group
/// is one repeated point and the groups differ (an explicit prompt told the true task), zero
/// when every point is the same (one prompt for every task).
pub fn calinski_harabasz(points: &[Vec<f64>], labels: &[usize]) -> Option<f64> {
    assert_eq!(points.len(), labels.len(), "one label per point");
    let n = points.len();
    let dim = points.first()?.len();
    let mut groups: Vec<usize> = labels.to_vec();
    groups.sort_unstable();
    groups.dedup();
    let k = groups.len();
    if k < 2 || n <= k {
        return None;
    }
    let centre = |members: &mut dyn Iterator<Item = &Vec<f64>>| {
        let mut c = vec![0.0; dim];
        let mut count = 0usize;
        for p in members {
            for (a, b) in c.iter_mut().zip(p) {
                *a += b;
            }
            count += 1;
        }
        c.iter_mut().for_each(|a| *a /= count.max(1) as f64);
        (c, count)
    };
    let dist2 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let (all, _) = centre(&mut points.iter());
    let (mut between, mut within) = (0.0, 0.0);
    for g in &groups {
        let (c, count) = centre(
            &mut points
                .iter()
                .zip(labels)
                .filter(|(_, l)| *l == g)
                .map(|(p, _)| p),
        );
        between += count as f64 * dist2(&c, &all);
        within += points
            .iter()
            .zip(labels)
            .filter(|(_, l)| *l == g)
            .map(|(p, _)| dist2(p, &c))
            .sum::<f64>();
    }
    if within == 0.0 {
        return Some(if between > 0.0 { f64::INFINITY } else { 0.0 });
    }
    Some((between / (k - 1) as f64) / (within / (n - k) as f64))
}

/// The points projected on their first two principal components (centred; the components by
/// power iteration with deflation, each signed so that its largest entry is positive, so the
/// projection is the same from run to run). Fewer than two points, or points that do not vary,
/// project to zeros.
pub fn project_2d(points: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let n = points.len();
    let Some(dim) = points.first().map(Vec::len) else {
        return vec![];
    };
    let mut mean = vec![0.0; dim];
    for p in points {
        for (m, v) in mean.iter_mut().zip(p) {
            *m += v / n as f64;
        }
    }
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(v, m)| v - m).collect())
        .collect();
    // The covariance (times n), dim x dim.
    let mut cov = vec![0.0; dim * dim];
    for p in &centred {
        for i in 0..dim {
            if p[i] == 0.0 {
                continue;
            }
            for j in 0..dim {
                cov[i * dim + j] += p[i] * p[j];
            }
        }
    }
    let mut components: Vec<Vec<f64>> = vec![];
    for _ in 0..2 {
        // A start that is not orthogonal to the leading component in practice.
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + (i as f64 * 0.618).fract()).collect();
        let mut norm = 0.0;
        for _ in 0..500 {
            let mut next = vec![0.0; dim];
            for i in 0..dim {
                next[i] = (0..dim).map(|j| cov[i * dim + j] * v[j]).sum();
            }
            // Deflate: stay orthogonal to the components already found.
            for c in &components {
                let d: f64 = next.iter().zip(c).map(|(a, b)| a * b).sum();
                next.iter_mut().zip(c).for_each(|(a, b)| *a -= d * b);
            }
            norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm < 1e-300 {
                break;
            }
            next.iter_mut().for_each(|x| *x /= norm);
            let moved: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = next;
            if moved < 1e-12 {
                break;
            }
        }
        if norm < 1e-300 {
            v = vec![0.0; dim];
        } else {
            let biggest = v
                .iter()
                .copied()
                .fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
            if biggest < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
        }
        components.push(v);
    }
    centred
        .iter()
        .map(|p| {
            let at = |c: &[f64]| p.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
            (at(&components[0]), at(&components[1]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_matches_its_definition_on_a_small_case() {
        // Groups {(0,0), (0,2)} and {(4,0), (4,2)}: centres (0,1), (4,1), overall (2,1).
        // B = 2*4 + 2*4 = 16 over k - 1 = 1; W = 4 * 1 = 4 over n - k = 2: 16 / 2 = 8.
        let pts = vec![
            vec![0.0, 0.0],
            vec![0.0, 2.0],
            vec![4.0, 0.0],
            vec![4.0, 2.0],
        ];
        let chi = calinski_harabasz(&pts, &[0, 0, 1, 1]).unwrap();
        assert!((chi - 8.0).abs() < 1e-12, "{chi}");
        // Mixing the labels separates nothing: B = 0.
        let mixed = calinski_harabasz(&pts, &[0, 1, 0, 1]).unwrap();
        assert!(mixed < chi, "{mixed}");
        // Farther groups score higher.
        let far = vec![
            vec![0.0, 0.0],
            vec![0.0, 2.0],
            vec![40.0, 0.0],
            vec![40.0, 2.0],
        ];
        assert!(calinski_harabasz(&far, &[0, 0, 1, 1]).unwrap() > chi);
        // One repeated point per group: perfectly separated.
        let same = vec![vec![1.0], vec![1.0], vec![3.0], vec![3.0]];
        assert_eq!(calinski_harabasz(&same, &[0, 0, 1, 1]), Some(f64::INFINITY));
        // One point for everything: nothing separated.
        let one = vec![vec![2.0]; 4];
        assert_eq!(calinski_harabasz(&one, &[0, 0, 1, 1]), Some(0.0));
        // Undefined cases.
        assert_eq!(calinski_harabasz(&pts, &[0, 0, 0, 0]), None);
        assert_eq!(calinski_harabasz(&pts[..2], &[0, 1]), None);
    }

    #[test]
    fn the_projection_keeps_the_main_spread() {
        // Points along the diagonal of 3-D space with a little spread across it: the first
        // component carries nearly all of it, and distances along it are kept.
        let pts: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let t = i as f64;
                let wobble = if i % 2 == 0 { 0.1 } else { -0.1 };
                vec![t, t + wobble, t]
            })
            .collect();
        let xy = project_2d(&pts);
        assert_eq!(xy.len(), 20);
        let spread = |f: &dyn Fn(&(f64, f64)) -> f64| {
            let v: Vec<f64> = xy.iter().map(f).collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
        };
        let (sx, sy) = (spread(&|p| p.0), spread(&|p| p.1));
        assert!(sx > 1000.0 * sy, "first component {sx}, second {sy}");
        // Points 0 and 2 share their wobble: (2, 2, 2) apart, 2 sqrt(3) along the diagonal.
        let step = (xy[2].0 - xy[0].0).abs();
        assert!(
            (step - 2.0 * 3f64.sqrt()).abs() < 1e-3,
            "two steps along the diagonal: {step}"
        );
        assert!(
            xy[19].0 > xy[0].0,
            "signed so the largest entry is positive"
        );
        // Identical points project to the origin.
        assert!(project_2d(&[vec![1.0, 2.0], vec![1.0, 2.0]])
            .iter()
            .all(|p| *p == (0.0, 0.0)));
        assert!(project_2d(&[]).is_empty());
    }
}
