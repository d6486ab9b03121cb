//! Scripted faults of the fakes: the next ones queued, then one for every request.

/// A scripted fault of a fake that can do more than fail: hang, or answer late.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    Status(u16),
    Hang,
    Delay(std::time::Duration),
}

/// Scripted faults (a status, or a [`Fault`]; one set per fake, or one per route): the next
/// ones queued, then one for every request until cleared.
#[derive(Debug)]
pub struct Faults<F = u16> {
    next: std::collections::VecDeque<F>,
    always: Option<F>,
}

impl<F> Default for Faults<F> {
    fn default() -> Self {
        Faults {
            next: Default::default(),
            always: None,
        }
    }
}

impl<F: Clone> Faults<F> {
    /// The next `n` requests get `fault`.
    pub fn next(&mut self, n: usize, fault: F) {
        self.next.extend(std::iter::repeat_n(fault, n));
    }

    /// Every request gets `fault` until cleared.
    pub fn always(&mut self, fault: F) {
        self.always = Some(fault);
    }

    pub fn clear(&mut self) {
        self.next.clear();
        self.always = None;
    }

    /// The fault this request gets, if one is scripted.
    pub fn take(&mut self) -> Option<F> {
        self.next.pop_front().or_else(|| self.always.clone())
    }
}
