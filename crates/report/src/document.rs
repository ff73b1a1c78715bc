//! A small document model for reports — headings, paragraphs, tables, figures, code — rendered to Markdown
//! (figures linked as PNG files) and to a self-contained HTML page (figures inlined as SVG, so the page opens
//! offline). Report builders produce a [`Document`]; nothing here computes statistics.

use std::fmt::Write as _;

/// One block of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading of level 1–4.
    Heading(u8, String),
    /// A paragraph of plain text.
    Paragraph(String),
    /// A table: header cells and rows of cells (numbers right-aligned when every cell parses as one).
    Table {
        /// Column headers.
        header: Vec<String>,
        /// Rows.
        rows: Vec<Vec<String>>,
    },
    /// A figure: the stem of files `<stem>.png` / `<stem>.svg` relative to the report, its SVG text (for HTML),
    /// and a caption.
    Figure {
        /// Path stem relative to the report directory, e.g. `figures/love`.
        stem: String,
        /// The SVG source, inlined in HTML.
        svg: String,
        /// Caption in plain language.
        caption: String,
    },
    /// Preformatted text.
    Code(String),
}

/// A report: a title and blocks in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    /// Title.
    pub title: String,
    /// Content.
    pub blocks: Vec<Block>,
}

impl Document {
    /// Adds a heading.
    pub fn h(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }

    /// Adds a paragraph.
    pub fn p(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Paragraph(text.into()));
    }

    /// Adds a table.
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table { header: header.iter().map(|s| s.to_string()).collect(), rows });
    }

    /// Renders Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", md_text(&self.title));
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let _ = writeln!(out, "{} {}\n", "#".repeat((*l as usize).clamp(1, 6)), md_text(t));
                }
                Block::Paragraph(t) => {
                    let _ = writeln!(out, "{}\n", md_text(t));
                }
                Block::Table { header, rows } => {
                    let esc = |s: &str| md_text(s).replace('|', "\\|");
                    let _ = writeln!(out, "| {} |", header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
                    let align: Vec<&str> =
                        (0..header.len()).map(|k| if numeric_column(rows, k) { "---:" } else { "---" }).collect();
                    let _ = writeln!(out, "|{}|", align.join("|"));
                    for r in rows {
                        let _ = writeln!(out, "| {} |", r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | "));
                    }
                    out.push('\n');
                }
                Block::Figure { stem, caption, .. } => {
                    let _ = writeln!(out, "![{}]({stem}.png)\n\n*{}*\n", escape_md_alt(caption), md_text(caption));
                }
                Block::Code(t) => {
                    let _ = writeln!(out, "```\n{}\n```\n", t.trim_end());
                }
            }
        }
        out
    }

    /// Renders a self-contained HTML page.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
            esc(&self.title),
            CSS,
            esc(&self.title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(l, t) => {
                    let l = (*l).clamp(1, 6);
                    let _ = writeln!(out, "<h{l}>{}</h{l}>", esc(t));
                }
                Block::Paragraph(t) => {
                    let _ = writeln!(out, "<p>{}</p>", esc(t));
                }
                Block::Table { header, rows } => {
                    out.push_str("<table>\n<thead><tr>");
                    for (k, h) in header.iter().enumerate() {
                        let class = if numeric_column(rows, k) { " class=\"num\"" } else { "" };
                        let _ = write!(out, "<th{class}>{}</th>", esc(h));
                    }
                    out.push_str("</tr></thead>\n<tbody>\n");
                    for r in rows {
                        out.push_str("<tr>");
                        for (k, c) in r.iter().enumerate() {
                            let class = if numeric_column(rows, k) { " class=\"num\"" } else { "" };
                            let _ = write!(out, "<td{class}>{}</td>", esc(c));
                        }
                        out.push_str("</tr>\n");
                    }
                    out.push_str("</tbody>\n</table>\n");
                }
                Block::Figure { svg, caption, .. } => {
                    let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
                    let _ = writeln!(out, "<figure>\n{body}\n<figcaption>{}</figcaption>\n</figure>", esc(caption));
                }
                Block::Code(t) => {
                    let _ = writeln!(out, "<pre>{}</pre>", esc(t));
                }
            }
        }
        out.push_str("</main>\n</body>\n</html>\n");
        out
    }
}

const CSS: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;color:#222;background:#fff;margin:0}\
main{max-width:980px;margin:0 auto;padding:24px 32px}h1{font-size:1.8em;border-bottom:2px solid #c8372d;padding-bottom:6px}\
h2{margin-top:2em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\
th,td{padding:4px 10px;border-bottom:1px solid #e4e4e4;text-align:left}th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}figcaption{font-size:0.9em;color:#555;margin-top:4px}\
pre{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:0.85em}";

fn numeric_column(rows: &[Vec<String>], k: usize) -> bool {
    let mut any = false;
    for r in rows {
        match r.get(k).map(|s| s.trim()) {
            Some("") | Some("–") | Some("NA") | None => {}
            Some(s) => {
                let s = s.trim_start_matches(['<', '−', '-']).trim_end_matches('%');
                if s.replace(',', "").parse::<f64>().is_err() {
                    return false;
                }
                any = true;
            }
        }
    }
    any
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn escape_md_alt(s: &str) -> String {
    md_text(&s.replace(['[', ']'], ""))
}

/// Text for Markdown with anything that would open raw HTML (`<` before a letter, `/`, `!` or `?`)
/// escaped, so names and titles from a study file cannot inject markup; `p < 0.05` and `<0.001` stay as written.
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '<' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) {
            out.push_str("&lt;");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::num;

    #[test]
    fn renders_markdown_and_html() {
        let mut d = Document { title: "Evaluation <test>".into(), ..Default::default() };
        d.h(2, "Balance");
        d.p("Lead & contrast schools.");
        d.table(&["term", "smd"], vec![vec!["pct_fsm".into(), num(-0.1234, 3)], vec!["a|b".into(), "–".into()]]);
        d.blocks.push(Block::Figure {
            stem: "figures/love".into(),
            svg: "<?xml version=\"1.0\"?><svg></svg>".into(),
            caption: "Balance [before] and after".into(),
        });
        let md = d.markdown();
        assert!(md.starts_with("# Evaluation &lt;test>"), "{md}");
        assert!(md.contains("| term | smd |\n|---|---:|"), "{md}");
        assert!(md.contains("a\\|b") && md.contains("−0.123"));
        assert!(md.contains("![Balance before and after](figures/love.png)"));
        let mut e = Document { title: "T".into(), ..Default::default() };
        e.p("<script>alert(1)</script> p < 0.05, <0.001");
        e.table(&["<b>x</b>"], vec![vec!["<img src=x>".into()]]);
        let md = e.markdown();
        assert!(!md.contains("<script") && !md.contains("<b>") && !md.contains("<img"), "{md}");
        assert!(md.contains("p < 0.05, <0.001"), "{md}");
        let html = d.html();
        assert!(html.contains("<title>Evaluation &lt;test&gt;</title>"));
        assert!(html.contains("<td class=\"num\">−0.123</td>"));
        assert!(html.contains("<figure>\n<svg></svg>"), "xml prolog stripped: {html}");
        assert!(!html.contains("src=\"http"), "self-contained");
    }
}
