//! HTML escaped by construction: [`Html`] is markup that can only be made from string literals
//! (trusted markup written in this crate), from text that it escapes, and from other [`Html`].
//! The status pages and the HTML email build their markup with it, so a forgotten escape does
//! not compile: a `String` put into a page is always escaped, and only an [`Html`] goes in as
//! it is. The [`html!`] and [`push_html!`] templates fill `{}` holes with [`Render`] values
//! (text escaped, numbers written, [`Html`] as it is); a template with another brace, or with
//! more or fewer holes than values, is a compile error. Pure, and knows no page.

use std::fmt::Write as _;

/// A piece of HTML whose every character of text was escaped on the way in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    pub fn new() -> Self {
        Html(String::new())
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Html(String::with_capacity(capacity))
    }

    /// Trusted markup: `'static`, so only string literals and constants of this crate, never
    /// text that was formatted or read at run time.
    pub fn literal(markup: &'static str) -> Self {
        Html(markup.to_string())
    }

    /// `text`, escaped.
    pub fn text(text: &str) -> Self {
        let mut out = Html::with_capacity(text.len());
        out.push_text(text);
        out
    }

    /// Append trusted markup (see [`Html::literal`]). Text made at run time does not compile:
    ///
    /// ```compile_fail
    /// let name = String::from("<script>");
    /// let mut page = canaryd::markup::Html::new();
    /// page.push_str(&format!("<b>{name}</b>"));
    /// ```
    pub fn push_str(&mut self, markup: &'static str) {
        self.0.push_str(markup);
    }

    /// Append `text`, escaped for element content and for single- or double-quoted attribute
    /// values: `& < > " '` become entities.
    pub fn push_text(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
    }

    /// Append markup built elsewhere.
    pub fn push_html(&mut self, html: &Html) {
        self.0.push_str(&html.0);
    }

    /// Append any [`Render`] value: text escaped, numbers written, markup as it is.
    pub fn push(&mut self, value: &(impl Render + ?Sized)) {
        value.render(self);
    }

    /// Fill `template`'s `{}` holes with `values`, in order. Use [`html!`] or [`push_html!`],
    /// which check the template when the crate compiles.
    #[doc(hidden)]
    pub fn fill(&mut self, template: &'static str, values: &[&dyn Render]) {
        let mut values = values.iter();
        let mut parts = template.split("{}");
        if let Some(first) = parts.next() {
            self.0.push_str(first);
        }
        for part in parts {
            if let Some(value) = values.next() {
                value.render(self);
            }
            self.0.push_str(part);
        }
    }

    /// `items` one after another with the markup `separator` between them.
    pub fn join(items: impl IntoIterator<Item = Html>, separator: &'static str) -> Html {
        let mut out = Html::new();
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push_str(separator);
            }
            out.push_html(&item);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromIterator<Html> for Html {
    fn from_iter<I: IntoIterator<Item = Html>>(items: I) -> Self {
        Html::join(items, "")
    }
}

/// Something a template can put in a hole. Text escapes itself; only [`Html`] goes in as
/// markup, and an implementation outside this module can only reach [`Html`]'s escaping or
/// `'static` methods.
pub trait Render {
    fn render(&self, out: &mut Html);
}

impl Render for Html {
    fn render(&self, out: &mut Html) {
        out.push_html(self);
    }
}

impl Render for str {
    fn render(&self, out: &mut Html) {
        out.push_text(self);
    }
}

impl Render for String {
    fn render(&self, out: &mut Html) {
        out.push_text(self);
    }
}

impl Render for char {
    fn render(&self, out: &mut Html) {
        out.push_text(self.encode_utf8(&mut [0; 4]));
    }
}

impl<T: Render + ?Sized> Render for &T {
    fn render(&self, out: &mut Html) {
        (**self).render(out);
    }
}

/// Numbers are written with `Display`, which only writes digits, signs, `.`, `e`, `inf`, `NaN`.
macro_rules! render_numbers {
    ($($t:ty),*) => {$(
        impl Render for $t {
            fn render(&self, out: &mut Html) {
                let _ = write!(out.0, "{self}");
            }
        }
    )*};
}
render_numbers!(u8, u16, u32, u64, usize, i32, i64, f64);

/// A number with a fixed count of decimals (`Fixed(1.25, 1)` is `1.2`): SVG coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fixed(pub f64, pub usize);

impl Render for Fixed {
    fn render(&self, out: &mut Html) {
        let _ = write!(out.0, "{:.*}", self.1, self.0);
    }
}

/// The number of `{}` holes in a template; `None` when it has any other brace.
#[doc(hidden)]
pub const fn holes(template: &str) -> Option<usize> {
    let bytes = template.as_bytes();
    let (mut i, mut count) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'{' if i + 1 < bytes.len() && bytes[i + 1] == b'}' => {
                count += 1;
                i += 2;
            }
            b'{' | b'}' => return None,
            _ => i += 1,
        }
    }
    Some(count)
}

#[doc(hidden)]
pub const fn one(_value: &str) -> usize {
    1
}

/// Markup from a template and values: `html!("<td class=\"{}\">{}</td>", class, name)`. Each
/// `{}` takes the next value, which must implement [`Render`] (a `&str` or `String` is escaped,
/// an [`Html`] goes in as it is). The template is a literal whose only braces are its holes, one
/// per value: `{name}`, `{:.1}` or a missing value does not compile.
macro_rules! html {
    ($template:literal $(, $value:expr)* $(,)?) => {{
        let mut out = $crate::markup::Html::new();
        $crate::markup::push_html!(out, $template $(, $value)*);
        out
    }};
}

/// [`html!`] appended to an [`Html`]: `push_html!(out, "<li>{}</li>", item)`.
macro_rules! push_html {
    ($out:expr, $template:literal $(, $value:expr)* $(,)?) => {{
        const {
            let holes = $crate::markup::holes($template);
            let values = 0usize $(+ $crate::markup::one(stringify!($value)))*;
            assert!(
                matches!(holes, Some(n) if n == values),
                "an HTML template has no braces but its empty holes, one per value"
            );
        }
        $out.fill($template, &[$(&$value as &dyn $crate::markup::Render),*]);
    }};
}

pub(crate) use {html, push_html};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_markup_is_not() {
        let hostile = "<script>alert('x') & \"y\"</script>";
        let escaped = "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;";
        assert_eq!(Html::text(hostile).as_str(), escaped);
        assert_eq!(
            Html::text("plain text, ünïcode").as_str(),
            "plain text, ünïcode"
        );
        assert_eq!(Html::text("&amp;").as_str(), "&amp;amp;");
        let inner = html!("<b>{}</b>", "<i>");
        let page = html!(
            "<p title=\"{}\">{} {} {} {}</p>",
            hostile.to_string(),
            inner,
            hostile,
            7u8,
            Fixed(2.26, 1)
        );
        assert_eq!(
            page.as_str(),
            format!("<p title=\"{escaped}\"><b>&lt;i&gt;</b> {escaped} 7 2.3</p>")
        );
    }

    #[test]
    fn templates_count_their_holes_and_refuse_other_braces() {
        assert_eq!(holes("<a href=\"{}\">{}</a>"), Some(2));
        assert_eq!(holes("plain"), Some(0));
        assert_eq!(holes("{name}"), None);
        assert_eq!(holes("{:.1}"), None);
        assert_eq!(holes("a}"), None);
        assert_eq!(holes("{"), None);
    }

    #[test]
    fn pieces_join_with_markup_between_them() {
        let items = ["a<", "b"].map(Html::text);
        assert_eq!(Html::join(items, " &nbsp; ").as_str(), "a&lt; &nbsp; b");
        let all: Html = ["<", ">"].map(Html::text).into_iter().collect();
        assert_eq!(all.as_str(), "&lt;&gt;");
        assert!(Html::new().is_empty());
    }
}
