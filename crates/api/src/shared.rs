//! One shared copy of each distinct value: what many objects repeat (label maps, namespace
//! and service account names, port maps) is kept once.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// The distinct values seen so far, each behind one `Arc`.
#[derive(Debug)]
pub struct Interner<T: ?Sized>(HashSet<Arc<T>>);

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner(HashSet::new())
    }
}

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// Replaces `value` with an equal one seen before, or remembers it.
    pub fn share(&mut self, value: &mut Arc<T>) {
        match self.0.get(&**value) {
            Some(seen) => *value = seen.clone(),
            None => {
                self.0.insert(value.clone());
            }
        }
    }

    /// The shared copy of `value`, made from it the first time.
    pub fn get(&mut self, value: &T) -> Arc<T>
    where
        for<'a> Arc<T>: From<&'a T>,
    {
        if let Some(seen) = self.0.get(value) {
            return seen.clone();
        }
        let fresh: Arc<T> = Arc::from(value);
        self.0.insert(fresh.clone());
        fresh
    }
}

impl<T: Hash + Eq> Interner<T> {
    /// The shared copy of `value`, which becomes it the first time.
    pub fn intern(&mut self, value: T) -> Arc<T> {
        if let Some(seen) = self.0.get(&value) {
            return seen.clone();
        }
        let fresh = Arc::new(value);
        self.0.insert(fresh.clone());
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_come_out_as_one() {
        let mut strs: Interner<str> = Interner::default();
        let a = strs.get("x");
        assert!(Arc::ptr_eq(&a, &strs.get("x")));
        assert!(!Arc::ptr_eq(&a, &strs.get("y")));
        let mut other: Arc<str> = Arc::from("x");
        strs.share(&mut other);
        assert!(Arc::ptr_eq(&a, &other));

        let mut maps: Interner<Vec<u32>> = Interner::default();
        let m = maps.intern(vec![1, 2]);
        assert!(Arc::ptr_eq(&m, &maps.intern(vec![1, 2])));
        assert_eq!(*maps.intern(vec![3]), [3]);
    }
}
