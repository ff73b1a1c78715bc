//! The "nearest unused control to the left / right" structure of the scalar engine: indices into a sorted
//! list with removals, answered by two path-compressed union–find forests in O(log n) amortized.

/// Indices into a sorted list with "nearest alive to the left / right" queries (two union–find forests).
#[derive(Debug)]
pub(super) struct SkipList {
    /// `left[i + 1]` leads to the nearest alive element ≤ i; 0 means none.
    left: Vec<usize>,
    /// `right[i]` leads to the nearest alive element ≥ i; `len` means none.
    right: Vec<usize>,
}

impl SkipList {
    pub(super) fn new(len: usize) -> Self {
        Self { left: (0..=len).collect(), right: (0..=len).collect() }
    }

    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            let up = parent[parent[x]];
            parent[x] = up;
            x = up;
        }
        x
    }

    /// Nearest alive index ≤ i.
    pub(super) fn alive_at_or_left(&mut self, i: usize) -> Option<usize> {
        let r = Self::find(&mut self.left, i + 1);
        (r > 0).then(|| r - 1)
    }

    /// Nearest alive index ≥ i.
    pub(super) fn alive_at_or_right(&mut self, i: usize) -> Option<usize> {
        let r = Self::find(&mut self.right, i);
        (r < self.right.len() - 1).then_some(r)
    }

    pub(super) fn remove(&mut self, i: usize) {
        self.left[i + 1] = i;
        self.right[i] = i + 1;
    }
}
