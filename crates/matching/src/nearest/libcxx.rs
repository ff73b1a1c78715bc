//! libc++'s `std::partial_sort` (LLVM `__partial_sort_impl`, `__sift_down`, and `__pop_heap` with Floyd's
//! sift-down), so ties among equally distant candidates come out as in the build of MatchIt that produced
//! its test snapshots (libc++; a libstdc++ build of MatchIt may order or choose tied candidates differently).
//! libc++'s `std::sort` below its insertion-sort limit (24 elements) is a sorting network on the first
//! three elements followed by insertion, which keeps equal elements in order; `sort` is therefore a stable
//! sort (exact for up to 24 candidates, i.e. `ratio` up to 24).

fn sift_down<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], len: usize, start: usize, less: &F) {
    let mut child = start;
    if len < 2 || (len - 2) / 2 < child {
        return;
    }
    child = 2 * child + 1;
    if child + 1 < len && less(&v[child], &v[child + 1]) {
        child += 1;
    }
    if less(&v[child], &v[start]) {
        return;
    }
    let top = v[start];
    let mut hole = start;
    loop {
        v[hole] = v[child];
        hole = child;
        if (len - 2) / 2 < child {
            break;
        }
        child = 2 * child + 1;
        if child + 1 < len && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if less(&v[child], &top) {
            break;
        }
    }
    v[hole] = top;
}

fn floyd_sift_down<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], len: usize, less: &F) -> usize {
    let mut hole = 0;
    let mut child = 0;
    loop {
        let mut child_i = hole + child + 1;
        child = 2 * child + 1;
        if child + 1 < len && less(&v[child_i], &v[child_i + 1]) {
            child_i += 1;
            child += 1;
        }
        v[hole] = v[child_i];
        hole = child_i;
        if child > (len - 2) / 2 {
            return hole;
        }
    }
}

fn sift_up<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], mut last: usize, len: usize, less: &F) {
    if len > 1 {
        let mut len = (len - 2) / 2;
        let mut ptr = len;
        last -= 1;
        if less(&v[ptr], &v[last]) {
            let t = v[last];
            loop {
                v[last] = v[ptr];
                last = ptr;
                if len == 0 {
                    break;
                }
                len = (len - 1) / 2;
                ptr = len;
                if !less(&v[ptr], &t) {
                    break;
                }
            }
            v[last] = t;
        }
    }
}

fn pop_heap<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], len: usize, less: &F) {
    if len > 1 {
        let top = v[0];
        let mut hole = floyd_sift_down(v, len, less);
        let last = len - 1;
        if hole == last {
            v[hole] = top;
        } else {
            v[hole] = v[last];
            hole += 1;
            v[last] = top;
            sift_up(v, hole, hole, less);
        }
    }
}

/// `std::partial_sort(v.begin(), v.begin() + middle, v.end(), less)` as libc++ does it.
pub(super) fn partial_sort<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], middle: usize, less: &F) {
    if middle == 0 {
        return;
    }
    if middle > 1 {
        let mut start = (middle - 2) / 2;
        loop {
            sift_down(v, middle, start, less);
            if start == 0 {
                break;
            }
            start -= 1;
        }
    }
    for i in middle..v.len() {
        if less(&v[i], &v[0]) {
            v.swap(i, 0);
            sift_down(v, middle, 0, less);
        }
    }
    let mut n = middle;
    while n > 1 {
        pop_heap(&mut v[..n], n, less);
        n -= 1;
    }
}

/// `std::sort` on short ranges (stable, see the module note).
pub(super) fn sort<F: Fn(&usize, &usize) -> bool>(v: &mut [usize], less: &F) {
    v.sort_by(|a, b| {
        if less(a, b) {
            std::cmp::Ordering::Less
        } else if less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorts_like_a_sort() {
        let keys: Vec<f64> = (0..40).map(|i| ((i * 7919) % 13) as f64).collect();
        let less = |a: &usize, b: &usize| keys[*a] < keys[*b];
        for n in [0, 1, 2, 5, 16, 17, 40] {
            let mut all: Vec<f64> = (0..n).map(|i| keys[i]).collect();
            all.sort_by(f64::total_cmp);
            for m in 1..=n {
                let mut v: Vec<usize> = (0..n).collect();
                super::partial_sort(&mut v, m, &less);
                let got: Vec<f64> = v[..m].iter().map(|&i| keys[i]).collect();
                assert_eq!(got, all[..m].to_vec(), "partial n={n} m={m}");
                let mut s = v.clone();
                s.sort_unstable();
                assert_eq!(s, (0..n).collect::<Vec<_>>());
            }
        }
    }

    /// Worked by hand through libc++'s code: five candidates, three tied at the minimum.
    #[test]
    fn tie_order_is_libcxx() {
        let keys = [9.96e-4, 5e-5, 1.48e-3, 5e-5, 5e-5];
        let mut v = vec![0, 1, 2, 3, 4];
        super::partial_sort(&mut v, 3, &|a: &usize, b: &usize| keys[*a] < keys[*b]);
        assert_eq!(&v[..3], &[3, 4, 1]);
    }
}
