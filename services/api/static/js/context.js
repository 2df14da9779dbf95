// What every component can reach: the session, the live socket, toasts. And the hooks
// that tie a component's life to live events and lot topics.
import { createContext } from "preact";
import { useContext, useEffect, useRef } from "preact/hooks";

export const AppContext = createContext(null);

/** {user, live, toast, logout} of the signed-in person. */
export const useApp = () => useContext(AppContext);

/** Call `handler(frame)` for each live frame of `type` while the component is shown. */
export function useLive(type, handler) {
  const { live } = useApp();
  const current = useRef(handler);
  current.current = handler;
  useEffect(() => live.on(type, (value) => current.current(value)), [live, type]);
}

/** Watch `lot.<id>` (slot_update frames) while the component is shown. */
export function useTopic(topic) {
  const { live } = useApp();
  useEffect(() => {
    if (!topic) return undefined;
    live.subscribe(topic);
    return () => live.unsubscribe(topic);
  }, [live, topic]);
}

/**
 * Run `load` now, after every reconnect, and when the person returns to the tab: the
 * moments when what the page shows may have gone stale (a sleeping tab misses frames
 * and its timers drift).
 */
export function useResync(load, deps) {
  const { live } = useApp();
  const current = useRef(load);
  current.current = load;
  useEffect(() => {
    let last = -Infinity;
    const run = () => {
      // Focus and visibilitychange often fire together: one fetch is enough.
      if (performance.now() - last < 500) return;
      last = performance.now();
      current.current();
    };
    current.current();
    last = performance.now();
    const onVisible = () => document.visibilityState === "visible" && run();
    const off = live.on("resynced", () => current.current());
    window.addEventListener("focus", run);
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      off();
      window.removeEventListener("focus", run);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [live, ...deps]);
}

/** A function that calls `fn` once, `ms` after the last of a burst of calls. */
export function useDebounced(fn, ms) {
  const current = useRef(fn);
  current.current = fn;
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  const ref = useRef(() => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => current.current(), ms);
  });
  return ref.current;
}
