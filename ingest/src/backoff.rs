//! Capped exponential back-off: the one retry rhythm of the runtime, the sinks, the
//! supervisors and the Kafka producer.

use std::time::Duration;

/// Each [`Backoff::next`] gives the delay to wait now and doubles the one after, up to a cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first`, doubling up to `max` (a `max` below `first` caps at `first`).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, next: first, max: max.max(first) }
    }

    /// The delay to wait now; the next one is twice as long, up to the cap.
    pub fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// The delay [`Backoff::next`] will give (for messages: "retrying in …").
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to the first delay (after a success that lasted).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_starts_over() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let got: Vec<Duration> = (0..5).map(|_| b.next()).collect();
        assert_eq!(got, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.reset();
        assert_eq!(b.peek(), ms(100));
        assert_eq!(Backoff::new(ms(10), ms(1)).next(), ms(10), "a cap below the first delay is the first delay");
    }
}
