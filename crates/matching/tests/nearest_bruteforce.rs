//! Brute-force equivalence: the O(n log n) matcher against a line-by-line transcription of MatchIt 4.7.2's
//! O(n²) C++ (`nn_matchC_vec`, `nn_matchC_vec_closest`, `find_control_vec`, `update_first_and_last_control`)
//! on seeded random problems with many ties, at several sizes, for every order, ratio 1–4, with and without
//! replacement, calipers (some hitting tied differences exactly), exact cells and discarded units.
//! Tolerance: none: the matched sets, including the order of controls within each set, must be identical,
//! and every result must pass `Matches::check`.

use psmeval_matching::matches::Problem;
use psmeval_matching::nearest::{Caliper, MatchError, NearestOptions, Order, nearest};
use psmeval_matching::support::Discard;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// R's `order()`: stable ascending.
fn r_order(x: &[f64]) -> Vec<usize> {
    let mut o: Vec<usize> = (0..x.len()).collect();
    o.sort_by(|&a, &b| x[a].partial_cmp(&x[b]).unwrap());
    o
}

/// libc++ `std::partial_sort` (independent transcription for the test).
fn libcxx_partial_sort(v: &mut [usize], middle: usize, key: &[f64]) {
    let less = |a: usize, b: usize| key[a] < key[b];
    fn sift_down(v: &mut [usize], len: usize, start: usize, less: &dyn Fn(usize, usize) -> bool) {
        let mut child = start;
        if len < 2 || (len - 2) / 2 < child {
            return;
        }
        child = 2 * child + 1;
        if child + 1 < len && less(v[child], v[child + 1]) {
            child += 1;
        }
        if less(v[child], v[start]) {
            return;
        }
        let top = v[start];
        let mut s = start;
        loop {
            v[s] = v[child];
            s = child;
            if (len - 2) / 2 < child {
                break;
            }
            child = 2 * child + 1;
            if child + 1 < len && less(v[child], v[child + 1]) {
                child += 1;
            }
            if less(v[child], top) {
                break;
            }
        }
        v[s] = top;
    }
    if middle == 0 {
        return;
    }
    if middle > 1 {
        for start in (0..=(middle - 2) / 2).rev() {
            sift_down(v, middle, start, &less);
        }
    }
    for i in middle..v.len() {
        if less(v[i], v[0]) {
            v.swap(i, 0);
            sift_down(v, middle, 0, &less);
        }
    }
    // sort_heap with Floyd pop_heap
    let mut len = middle;
    while len > 1 {
        let top = v[0];
        let (mut hole, mut child) = (0usize, 0usize);
        loop {
            let mut ci = hole + child + 1;
            child = 2 * child + 1;
            if child + 1 < len && less(v[ci], v[ci + 1]) {
                ci += 1;
                child += 1;
            }
            v[hole] = v[ci];
            hole = ci;
            if child > (len - 2) / 2 {
                break;
            }
        }
        let last = len - 1;
        if hole == last {
            v[hole] = top;
        } else {
            v[hole] = v[last];
            v[last] = top;
            // sift_up over [0, hole + 1)
            let mut l = hole + 1;
            if l > 1 {
                let mut p = (l - 2) / 2;
                l -= 1;
                if less(v[p], v[l]) {
                    let t = v[l];
                    loop {
                        v[l] = v[p];
                        l = p;
                        if p == 0 {
                            break;
                        }
                        p = (p - 1) / 2;
                        if !less(v[p], t) {
                            break;
                        }
                    }
                    v[l] = t;
                }
            }
        }
        len -= 1;
    }
}

struct Ref<'a> {
    d: &'a [f64],
    treat: &'a [bool],
    exact: Option<&'a [u32]>,
    ind_d_ord: Vec<usize>,
    match_d_ord: Vec<usize>,
    caliper: f64,
}

impl Ref<'_> {
    /// `update_first_and_last_control` for the control group.
    fn update_bounds(&self, first: &mut usize, last: &mut usize, eligible: &[bool]) {
        if !eligible[self.ind_d_ord[*first]] {
            for c in *first + 1..=*last {
                if eligible[self.ind_d_ord[c]] && !self.treat[self.ind_d_ord[c]] {
                    *first = c;
                    break;
                }
            }
        }
        if !eligible[self.ind_d_ord[*last]] {
            let mut c = *last as isize - 1;
            while c >= *first as isize {
                let u = self.ind_d_ord[c as usize];
                if eligible[u] && !self.treat[u] {
                    *last = c as usize;
                    break;
                }
                c -= 1;
            }
        }
    }

    /// `find_control_vec`, transcribed.
    #[allow(clippy::too_many_arguments)]
    fn find(
        &self,
        t: usize,
        eligible: &[bool],
        r: usize,
        mm_row: &[usize],
        first: usize,
        last: usize,
        ratio: usize,
        prev_start: Option<usize>,
    ) -> Vec<usize> {
        let ii = self.match_d_ord[t];
        let mut starts: Vec<usize> = Vec::new();
        if r > 1 {
            starts.extend(mm_row.iter().map(|&m| self.match_d_ord[m]));
        }
        if let Some(p) = prev_start {
            starts.push(self.match_d_ord[p]);
        }
        let (mut iil, mut iir, min_dist);
        let di = self.d[t];
        if starts.is_empty() {
            iil = ii;
            iir = ii;
            min_dist = 0.0;
        } else {
            starts.push(ii);
            iil = *starts.iter().min().unwrap();
            iir = *starts.iter().max().unwrap();
            let dl = (di - self.d[self.ind_d_ord[iil]]).abs();
            let dr = (di - self.d[self.ind_d_ord[iir]]).abs();
            min_dist = if iil == ii {
                dr
            } else if iir == ii {
                dl
            } else {
                dl.max(dr)
            };
        }
        let (mut l_stop, mut r_stop, mut left) = (false, false, false);
        let (mut nl, mut nr) = (0, 0);
        let mut ids: Vec<usize> = Vec::new();
        let mut dists: Vec<f64> = Vec::new();
        while !l_stop || !r_stop {
            if l_stop {
                left = false;
            } else if r_stop {
                left = true;
            } else {
                left = !left;
            }
            let iz;
            if left {
                if iil <= first || nl == ratio {
                    l_stop = true;
                    continue;
                }
                iil -= 1;
                iz = self.ind_d_ord[iil];
            } else {
                if iir >= last || nr == ratio {
                    r_stop = true;
                    continue;
                }
                iir += 1;
                iz = self.ind_d_ord[iir];
            }
            if !eligible[iz] || self.treat[iz] {
                continue;
            }
            if r > 1 && mm_row.contains(&iz) {
                continue;
            }
            let dist = (di - self.d[iz]).abs();
            if dist > self.caliper {
                if left {
                    l_stop = true;
                } else {
                    r_stop = true;
                }
                continue;
            }
            if dist < min_dist {
                continue;
            }
            if ids.len() >= ratio && dists.iter().filter(|&&x| x < dist).count() >= ratio {
                if left {
                    l_stop = true;
                } else {
                    r_stop = true;
                }
                continue;
            }
            if let Some(ex) = self.exact
                && ex[t] != ex[iz]
            {
                continue;
            }
            ids.push(iz);
            dists.push(dist);
            if left {
                nl += 1;
                if nl == ratio {
                    l_stop = true;
                }
            } else {
                nr += 1;
                if nr == ratio {
                    r_stop = true;
                }
            }
        }
        let n = ids.len();
        if n <= 1 || (n <= ratio && dists.windows(2).all(|w| w[0] <= w[1])) {
            return ids;
        }
        let mut ind: Vec<usize> = (0..n).collect();
        if n > ratio {
            libcxx_partial_sort(&mut ind, ratio, &dists);
            ind[..ratio].iter().map(|&i| ids[i]).collect()
        } else {
            ind.sort_by(|&a, &b| dists[a].partial_cmp(&dists[b]).unwrap());
            ind.iter().map(|&i| ids[i]).collect()
        }
    }
}

/// MatchIt's nearest-neighbour matching, transcribed (ATT, focal = treated). Returns each treated unit's
/// controls in match-matrix order.
#[allow(clippy::too_many_arguments)]
fn reference(
    d: &[f64],
    treat: &[bool],
    exact: Option<&[u32]>,
    discarded: &[bool],
    width: Option<f64>,
    ratio: usize,
    replace: bool,
    order: Order,
    seed: u64,
) -> Vec<Vec<usize>> {
    let n = d.len();
    let (lo, hi) = d.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let ind_d_ord = r_order(d);
    let mut match_d_ord = vec![0; n];
    for (p, &u) in ind_d_ord.iter().enumerate() {
        match_d_ord[u] = p;
    }
    let rf = Ref { d, treat, exact, ind_d_ord, match_d_ord, caliper: width.unwrap_or(hi - lo + 1.0) };
    let mut eligible: Vec<bool> = discarded.iter().map(|x| !x).collect();
    if let Some(ex) = exact {
        // discarded[!ex %in% levels(ex)[cc]] <- TRUE
        for i in 0..n {
            let both = (0..n).any(|j| ex[j] == ex[i] && treat[j]) && (0..n).any(|j| ex[j] == ex[i] && !treat[j]);
            if !both {
                eligible[i] = false;
            }
        }
    }
    let treated: Vec<usize> = (0..n).filter(|&i| treat[i]).collect();
    let n1 = treated.len();
    let mut mm: Vec<Vec<usize>> = vec![Vec::new(); n];
    let order = if replace { Order::Data } else { order };
    let ord: Vec<usize> = match order {
        Order::Largest => {
            let mut t = treated.clone();
            t.sort_by(|&a, &b| d[b].partial_cmp(&d[a]).unwrap());
            t
        }
        Order::Smallest => {
            let mut t = treated.clone();
            t.sort_by(|&a, &b| d[a].partial_cmp(&d[b]).unwrap());
            t
        }
        Order::Data | Order::Closest => treated.iter().copied().filter(|&t| !discarded[t]).collect(),
        Order::Random => {
            let mut t: Vec<usize> = treated.iter().copied().filter(|&t| !discarded[t]).collect();
            t.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            t
        }
    };
    let (mut first, mut last) = (0usize, n - 1);
    let mut times = vec![0usize; n];
    if replace {
        for &t in &ord {
            if !eligible[t] {
                continue;
            }
            mm[t] = rf.find(t, &eligible, 1, &[], first, last, ratio, None);
        }
        return mm;
    }
    let allowed = |u: usize| if treat[u] { ratio } else { 1 };
    let mut use_unit = |u: usize, eligible: &mut Vec<bool>| {
        if eligible[u] {
            times[u] += 1;
            if times[u] >= allowed(u) {
                eligible[u] = false;
            }
        }
    };
    if order == Order::Closest {
        rf.update_bounds(&mut first, &mut last, &eligible);
        for r in 1..=ratio {
            let (mut tid, mut cid, mut dist) = (Vec::new(), Vec::new(), Vec::new());
            for &t in &treated {
                if !eligible[t] {
                    continue;
                }
                let k = rf.find(t, &eligible, r, &mm[t], first, last, 1, None);
                if k.is_empty() {
                    eligible[t] = false;
                    continue;
                }
                tid.push(t);
                cid.push(k[0]);
                dist.push((d[t] - d[k[0]]).abs());
            }
            let mut heap = r_order(&dist);
            let mut i = 0;
            while i < heap.len() {
                if !(0..n).any(|u| eligible[u] && treat[u]) || !(0..n).any(|u| eligible[u] && !treat[u]) {
                    break;
                }
                let h = heap[i];
                let t = tid[h];
                if !eligible[t] {
                    i += 1;
                    continue;
                }
                let c = cid[h];
                if !eligible[c] {
                    rf.update_bounds(&mut first, &mut last, &eligible);
                    let k = rf.find(t, &eligible, r, &mm[t], first, last, 1, Some(c));
                    if k.is_empty() {
                        eligible[t] = false;
                        continue;
                    }
                    cid[h] = k[0];
                    dist[h] = (d[t] - d[k[0]]).abs();
                    // lower_bound over heap[i..] with comp dist[a] < dist[h], then rotate.
                    let (mut f, mut len) = (i, heap.len() - i);
                    while len > 0 {
                        let half = len / 2;
                        let mid = f + half;
                        if dist[heap[mid]] < dist[h] {
                            f = mid + 1;
                            len = len - half - 1;
                        } else {
                            len = half;
                        }
                    }
                    if f != i {
                        heap[i..f].rotate_left(1);
                    }
                    continue;
                }
                mm[t].push(c);
                use_unit(c, &mut eligible);
                use_unit(t, &mut eligible);
                i += 1;
            }
        }
        return mm;
    }
    for r in 1..=ratio {
        for &t in &ord {
            if !(0..n).any(|u| eligible[u] && !treat[u]) {
                break;
            }
            if !eligible[t] {
                continue;
            }
            rf.update_bounds(&mut first, &mut last, &eligible);
            let k = rf.find(t, &eligible, r, &mm[t], first, last, 1, None);
            if k.is_empty() {
                if r == 1 {
                    eligible[t] = false;
                }
                continue;
            }
            mm[t].push(k[0]);
            use_unit(k[0], &mut eligible);
            use_unit(t, &mut eligible);
        }
    }
    let _ = n1;
    mm
}

#[test]
fn fast_matcher_equals_matchit_transcription() {
    let mut rng = ChaCha8Rng::seed_from_u64(20261122);
    let mut compared = 0;
    for &n in &[6usize, 15, 40, 120, 300] {
        for rep in 0..60 {
            let levels = [3.0, 7.0, 20.0, 1000.0][rep % 4];
            let d: Vec<f64> = (0..n).map(|_| (rng.random::<f64>() * levels).floor() / levels).collect();
            let p_treat = [0.2, 0.35, 0.5][rep % 3];
            let treat: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < p_treat).collect();
            if treat.iter().all(|&t| t) || treat.iter().all(|&t| !t) {
                continue;
            }
            let exact: Option<Vec<u32>> = (rep % 5 == 1).then(|| (0..n).map(|_| rng.random_range(0..3u32)).collect());
            let discard = if rep % 7 == 3 {
                Discard::Mask((0..n).map(|_| rng.random::<f64>() < 0.15).collect())
            } else {
                [Discard::None, Discard::Both, Discard::Treated, Discard::None][rep % 4].clone()
            };
            let caliper = match rep % 6 {
                0 | 3 => None,
                1 => Some(Caliper::Raw(1.0 / levels)), // hits tied differences exactly (inclusive test)
                2 => Some(Caliper::Raw(2.5 / levels)),
                4 => Some(Caliper::Sd(0.25)),
                _ => Some(Caliper::Sd(0.05)),
            };
            for order in [Order::Largest, Order::Smallest, Order::Data, Order::Random, Order::Closest] {
                for ratio in [1usize, 2, 4] {
                    for replace in [false, true] {
                        if replace && order != Order::Data {
                            continue; // MatchIt forces data order with replacement
                        }
                        let opts = NearestOptions {
                            ratio,
                            replace,
                            order,
                            caliper,
                            discard: discard.clone(),
                            seed: rep as u64,
                        };
                        let mut problem = Problem::new(&d, &treat);
                        problem.exact = exact.as_deref();
                        let discarded = psmeval_matching::support::discard(&d, &treat, &opts.discard).unwrap();
                        let width =
                            caliper.map(|c| psmeval_matching::nearest::caliper_width(c, &d, &discarded).unwrap());
                        let want = reference(
                            &d,
                            &treat,
                            exact.as_deref(),
                            &discarded,
                            width,
                            ratio,
                            replace,
                            order,
                            rep as u64,
                        );
                        let ctx = format!(
                            "n={n} rep={rep} order={order:?} ratio={ratio} replace={replace} caliper={caliper:?}"
                        );
                        match nearest(&problem, &opts) {
                            Ok(m) => {
                                m.check(&problem).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                                let mut got = vec![Vec::new(); n];
                                for s in &m.sets {
                                    got[s.treated] = s.controls.clone();
                                }
                                assert_eq!(got, want, "{ctx}");
                                compared += 1;
                            }
                            Err(MatchError::NothingMatched) => assert!(want.iter().all(|c| c.is_empty()), "{ctx}"),
                            Err(MatchError::NoCommonCell) => {}
                            Err(e) => panic!("{ctx}: {e}"),
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 3000, "only {compared} problems compared");
}
