import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";

import Markdown from "./Markdown";

const html = (text: string) => renderToStaticMarkup(<Markdown text={text} />);

describe("Markdown", () => {
  it("renders the model's Markdown", () => {
    const out = html("**bold** and `code`\n\n- one\n- two");
    expect(out).toContain("<strong>bold</strong>");
    expect(out).toContain("<code>code</code>");
    expect(out).toContain("<li>one</li>");
  });

  it("never renders raw HTML or script URLs", () => {
    const out = html('<img src=x onerror="alert(1)"> <script>alert(2)</script> [link](javascript:alert(3))');
    expect(out).not.toMatch(/<img|<script|onerror=|javascript:/i);
    expect(out).toContain("link");
  });

  it("keeps the model's line breaks, and its blank lines as paragraphs", () => {
    const out = html("Line one\nLine two\n\nNext paragraph");
    expect(out).toContain("<p>Line one<br/>\nLine two</p>");
    expect(out).toContain("<p>Next paragraph</p>");
  });

  it("shows an image as a link (the page loads none from elsewhere) and a table in a scroll box", () => {
    const out = html("![a cat](https://example.com/cat.png)\n\n| A | B |\n|---|---|\n| 1 | 2 |");
    expect(out).not.toContain("<img");
    expect(out).toMatch(/<a href="https:\/\/example.com\/cat.png"[^>]*>a cat<\/a>/);
    expect(out).toMatch(/<div class="overflow-x-auto"><table>/);
  });

  it("gives code blocks a copy button", () => {
    const out = html("```python\nprint('hi')\n```");
    expect(out).toContain('aria-label="Copy code"');
    expect(out).toMatch(/<pre><code[^>]*>print\(&#x27;hi&#x27;\)/);
  });
});
