#pragma once
// A queue of work served by a pool of threads: producers push, each thread pops the next item
// and calls done() once it has finished with it. The queue counts the items waiting and the
// items in hand, so a producer can admit work against all the pool has taken on, however fast
// its threads take their next.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>

namespace kiln::util {

template <typename T>
class WorkQueue {
  public:
    // Appends `item` unless `limit` items are waiting or in hand already: then false, and
    // `item` is left as it was.
    bool push(T& item, std::size_t limit = std::numeric_limits<std::size_t>::max()) {
        {
            std::lock_guard lock(mutex_);
            if (waiting_.size() + in_hand_ >= limit) return false;
            waiting_.push_back(std::move(item));
        }
        pushed_.notify_one();
        return true;
    }

    // The next item, waiting for one; it is then in hand until done(). Once close() was
    // called, the items still waiting are handed out, then nullopt.
    std::optional<T> pop() {
        std::unique_lock lock(mutex_);
        pushed_.wait(lock, [&] { return !waiting_.empty() || closed_; });
        if (waiting_.empty()) return std::nullopt;
        std::optional<T> item(std::move(waiting_.front()));
        waiting_.pop_front();
        ++in_hand_;
        return item;
    }

    // An item taken by pop() is finished with.
    void done() {
        std::lock_guard lock(mutex_);
        --in_hand_;
    }

    // Wakes every pop() for good: they take what still waits, then get nullopt.
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        pushed_.notify_all();
    }

    // Removes the items waiting and returns them, oldest first.
    std::deque<T> take_waiting() {
        std::lock_guard lock(mutex_);
        return std::exchange(waiting_, {});
    }

    [[nodiscard]] std::size_t in_hand() const {
        std::lock_guard lock(mutex_);
        return in_hand_;
    }

    // Items waiting plus items in hand.
    [[nodiscard]] std::size_t load() const {
        std::lock_guard lock(mutex_);
        return waiting_.size() + in_hand_;
    }

  private:
    mutable std::mutex mutex_;
    std::condition_variable pushed_;
    std::deque<T> waiting_;
    std::size_t in_hand_ = 0;
    bool closed_ = false;
};

}  // namespace kiln::util
