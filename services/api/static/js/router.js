// Hash routes (#/lots/<id>): the api serves one page at /, so every view is a fragment
// and a reload or a shared link lands on the same view.
import { useEffect, useState } from "preact/hooks";

export function navigate(hash) {
  if (location.hash === hash) return;
  location.hash = hash;
}

/** The current route as a list of path parts: "#/lots/42" -> ["lots", "42"]. */
export function useRoute() {
  const parse = () => location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const [parts, setParts] = useState(parse);
  useEffect(() => {
    const onChange = () => {
      setParts(parse());
      window.scrollTo(0, 0);
    };
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return parts;
}
