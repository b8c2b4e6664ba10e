/**
 * Characters that act on a terminal rather than show: C0 and C1 controls and DEL (ESC starts
 * sequences that move the cursor, rewrite the screen, set the window title or a hyperlink; a line
 * break forges a row), bidirectional controls, which reorder what is shown (CVE-2021-42574), and the
 * Unicode line and paragraph separators.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text an end user chose (a user agent, a subject) or a proxy wrote, made safe for the human output
 * of an admin's terminal: each such character is shown as an escape (`\x1b`, `\u202e`). `--json`
 * prints the exact value.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
