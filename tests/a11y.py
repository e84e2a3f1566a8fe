"""What a page's readers need, measured in Chromium: text contrast (WCAG 2.2 AA) and accessible names of controls."""

from __future__ import annotations

from playwright.sync_api import Page

#: JavaScript returning every piece of visible text whose contrast with what is behind it is below WCAG AA: 4.5:1, or
#: 3:1 for large text (24 px, or 18.66 px bold). Colours are composited as the eye sees them: the text's colour (its
#: alpha times every ancestor's opacity) over the backgrounds of its ancestors, over the white canvas. Icons drawn
#: from a font (Material icons) are graphics, not text, and are skipped, as are disabled controls. It first waits for
#: the page's transitions to end (a dialog fading in).
#: The formulas are WCAG's: https://www.w3.org/TR/WCAG22/#dfn-contrast-ratio, #dfn-relative-luminance.
LOW_CONTRAST_JS = """
async () => {
  // a dialog fading in is not yet its colours: wait for every transition and finite animation to end (after two
  // frames, so that those a hover or a click just started have started)
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  await Promise.all(document.getAnimations().filter((a) => a.effect.getTiming().iterations !== Infinity)
    .map((a) => a.finished.catch(() => null)));
  const parse = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1,
  });
  const channel = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const hex = (c) => "#" + [c.r, c.g, c.b].map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
  const SKIPPED = ".q-icon, .material-icons, [disabled], .disabled, [aria-disabled='true'], [aria-hidden='true']";
  const seen = new Set();
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!element || seen.has(element) || !node.textContent.trim()) continue;
    seen.add(element);
    if (element.closest(SKIPPED)) continue;
    const style = getComputedStyle(element);
    const box = element.getBoundingClientRect();
    if (style.visibility !== "visible" || box.width === 0 || box.height === 0) continue;
    const chain = [];
    for (let e = element; e; e = e.parentElement) chain.unshift(e);
    let background = { r: 255, g: 255, b: 255, a: 1 };
    let opacity = 1;
    for (const e of chain) {
      const s = getComputedStyle(e);
      opacity *= Number(s.opacity);
      const color = parse(s.backgroundColor);
      if (color && color.a > 0) background = over(color, background);
    }
    if (opacity === 0) continue;
    const text = parse(style.color);
    text.a *= opacity;
    const seenColor = over(text, background);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const contrast = ratio(seenColor, background);
    if (contrast < (large ? 3 : 4.5) - 0.005) {
      failures.push({ text: node.textContent.trim().slice(0, 60), contrast: Math.round(contrast * 100) / 100,
                      color: hex(seenColor), background: hex(background), classes: element.className.toString() });
    }
  }
  return failures;
}
"""

#: Roles whose elements must have an accessible name (what a screen reader announces).
NAMED_ROLES = {"button", "link", "textbox", "combobox", "slider", "checkbox", "menuitem", "menuitemradio", "switch",
               "tab", "searchbox", "spinbutton"}  # fmt: skip


def low_contrast(page: Page) -> list[dict]:
    """Every visible text on ``page`` below WCAG AA contrast: ``[{"text", "contrast", "color", "background",
    "classes"}]``, empty when all text passes."""
    return page.evaluate(LOW_CONTRAST_JS)


def unnamed_controls(page: Page) -> list[dict]:
    """Every control on ``page`` (a role of ``NAMED_ROLES``) without an accessible name, from Chromium's own
    accessibility tree (CDP ``Accessibility.getFullAXTree``): ``[{"role", "node", "attributes"}]`` (the element's tag
    name and attributes, to find it), empty when all have one."""
    session = page.context.new_cdp_session(page)
    try:
        unnamed = []
        for node in session.send("Accessibility.getFullAXTree")["nodes"]:
            role = node.get("role", {}).get("value")
            if node.get("ignored") or role not in NAMED_ROLES or str(node.get("name", {}).get("value", "")).strip():
                continue
            element = session.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})["node"]
            attributes = element.get("attributes", [])
            unnamed.append({"role": role, "node": element["nodeName"].lower(),
                            "attributes": dict(zip(attributes[::2], attributes[1::2], strict=True))})  # fmt: skip
        return unnamed
    finally:
        session.detach()
