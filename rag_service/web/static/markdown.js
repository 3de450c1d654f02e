// A small, safe Markdown renderer for streamed answers.
//
// Model output and catalog text are never parsed as HTML: every piece of text becomes a DOM
// text node (textContent / createTextNode), and the only elements created are the ones listed
// here. The subset (docs/web.md):
//   - blocks are separated by a blank line; inside a block, lines starting with "- ", "* " or
//     "+ " form a bulleted list, lines starting with "1. " or "1) " a numbered list, other lines
//     a paragraph (a single line break is kept as a line break);
//   - inline: **bold**, *italic*, `code` (nothing is formatted inside it), and
//     [text](https://...) links, only for http and https URLs, opened with rel="noopener
//     noreferrer"; any other link stays plain text.
// Everything else (HTML tags, images, headings, tables) shows as the literal text it is.
//
// Streaming: `MarkdownStream.append` adds a token to a live text node of the unfinished block
// (appendData: the answer's earlier text is never rendered again); a block is rendered once,
// when the blank line after it arrives, and the last one at `finish`.

const BULLET = /^\s*[-*+]\s+/;
const NUMBERED = /^\s*\d{1,9}[.)]\s+/;
const INLINE =
  /`([^`\n]+)`|\*\*([^*\n](?:[^\n]*?[^*\n])?)\*\*|\*([^*\s\n](?:[^*\n]*?[^*\s\n])?)\*|\[([^\]\n]+)\]\(([^()\s]+)\)/g;

export function safeLink(href) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

// Append `text`'s inline Markdown to `parent` as text nodes and the few inline elements.
export function renderInline(text, parent) {
  const doc = parent.ownerDocument;
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) parent.append(doc.createTextNode(text.slice(last, match.index)));
    last = match.index + match[0].length;
    const [whole, code, bold, italic, label, href] = match;
    if (code !== undefined) {
      const element = doc.createElement("code");
      element.textContent = code;
      parent.append(element);
    } else if (bold !== undefined || italic !== undefined) {
      const element = doc.createElement(bold !== undefined ? "strong" : "em");
      renderInline(bold ?? italic, element);
      parent.append(element);
    } else {
      const url = safeLink(href);
      if (url === null) {
        parent.append(doc.createTextNode(whole));
        continue;
      }
      const link = doc.createElement("a");
      link.href = url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      link.textContent = label;
      parent.append(link);
    }
  }
  if (last < text.length) parent.append(doc.createTextNode(text.slice(last)));
}

function lineKind(line) {
  if (BULLET.test(line)) return "ul";
  if (NUMBERED.test(line)) return "ol";
  return "p";
}

// One block (no blank line inside) as elements: runs of list lines and paragraph lines.
export function renderBlock(block, doc) {
  const fragment = doc.createDocumentFragment();
  let run = null;
  let kind = "";
  for (const line of block.split("\n")) {
    if (line.trim() === "") continue;
    const lineType = lineKind(line);
    if (run === null || lineType !== kind) {
      kind = lineType;
      run = doc.createElement(kind);
      fragment.append(run);
    }
    if (kind === "p") {
      if (run.childNodes.length > 0) run.append(doc.createElement("br"));
      renderInline(line.trim(), run);
    } else {
      const item = doc.createElement("li");
      renderInline(line.replace(kind === "ul" ? BULLET : NUMBERED, "").trim(), item);
      run.append(item);
    }
  }
  return fragment;
}

// Markdown into `container` as it streams in (see the module comment).
export class MarkdownStream {
  #container;
  #pending; // the unfinished block, shown as plain text while it grows
  #tail = "";
  #text = "";

  constructor(container) {
    this.#container = container;
    this.#pending = container.ownerDocument.createElement("p");
    this.#pending.className = "pending";
    this.#pending.append(container.ownerDocument.createTextNode(""));
    container.append(this.#pending);
  }

  // The raw text received so far.
  get text() {
    return this.#text;
  }

  append(piece) {
    if (piece === "") return;
    this.#text += piece;
    this.#tail += piece;
    const end = this.#tail.lastIndexOf("\n\n");
    if (end === -1) {
      this.#pending.firstChild.appendData(piece);
      return;
    }
    this.#renderFinished(this.#tail.slice(0, end));
    this.#tail = this.#tail.slice(end + 2);
    this.#pending.firstChild.data = this.#tail;
  }

  finish() {
    this.#renderFinished(this.#tail);
    this.#tail = "";
    this.#pending.remove();
  }

  #renderFinished(text) {
    const doc = this.#container.ownerDocument;
    for (const block of text.split(/\n{2,}/)) {
      if (block.trim() !== "") this.#container.insertBefore(renderBlock(block, doc), this.#pending);
    }
  }
}
