//! A static pass over `gotmpl`'s parse tree that makes its execution print
//! what Go would print.
//!
//! It tracks what each expression is (the info struct, `serverInfo`, the
//! tags map, the fields map, a string, `.Time`, `.Duration`, unknown) and
//! rewrites the tree:
//! - every printing action gets a final `__kp_print*` call (Go's `%v` of
//!   floats, maps and the info structs);
//! - `index` on the tags map becomes `__kp_index_str` (missing key → `""`);
//! - `json`/`jsonCompact` get the encoder of their argument's Go type
//!   (struct field order, `time.Time` as RFC 3339, `Duration` as ns);
//! - `printf` arguments pass through `__kp_pfarg`, `html`/`js`/`urlquery`
//!   arguments through `__kp_v`;
//! - a field the Go struct does not have (`.Nope`, `.ServerInfo.Nope`,
//!   `.Name.Nope`) becomes a call that fails at execution with Go's message;
//! - an undefined function is reported as Go reports it at parse time.
//!
//! Pipelines are flattened first (`a | f b` → `f b (a)`, which is how Go
//! evaluates them), so every argument is visible to the pass.

use std::collections::HashMap;
use std::sync::Arc;

use gotmpl::parse::{
    ActionNode, BranchNode, CommandNode, Expr, ListNode, Node, Number, PipeNode, Pos, SmolStr,
    TemplateNode,
};

use super::Scope;
use super::value::{JsonKind, PrintKind};

/// The functions Go's `text/template` predefines.
const BUILTINS: [&str; 19] = [
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "html", "js",
    "urlquery", "call", "eq", "ne", "lt", "le", "gt", "ge",
];

/// Names of the helper functions the rewritten trees call.
pub(super) const PRINT: &str = "__kp_print";
pub(super) const PRINT_ROOT: &str = "__kp_print_root";
pub(super) const PRINT_SERVER_INFO: &str = "__kp_print_si";
pub(super) const PRINT_HTML: &str = "__kp_print_html";
pub(super) const GO_V: &str = "__kp_v";
pub(super) const GO_V_NIL: &str = "__kp_v_nil";
pub(super) const PRINTF_ARG: &str = "__kp_pfarg";
pub(super) const INDEX_STR: &str = "__kp_index_str";
pub(super) const FAIL: &str = "__kp_fail";
pub(super) const TIME_METHOD: &str = "__kp_time";
pub(super) const DURATION_METHOD: &str = "__kp_dur";

/// The `json` helper for a kind of argument, compact or not.
pub(super) fn json_name(kind: JsonKind, compact: bool) -> &'static str {
    match (kind, compact) {
        (JsonKind::Any, false) => "json",
        (JsonKind::Any, true) => "jsonCompact",
        (JsonKind::Root(_), false) => "__kp_json_root",
        (JsonKind::Root(_), true) => "__kp_jsonc_root",
        (JsonKind::ServerInfo, false) => "__kp_json_si",
        (JsonKind::ServerInfo, true) => "__kp_jsonc_si",
        (JsonKind::Time, false) => "__kp_json_time",
        (JsonKind::Time, true) => "__kp_jsonc_time",
        (JsonKind::Duration, false) => "__kp_json_dur",
        (JsonKind::Duration, true) => "__kp_jsonc_dur",
    }
}

/// The print helper for a statically known kind.
pub(super) fn print_name(kind: PrintKind) -> &'static str {
    match kind {
        PrintKind::Root(_) => PRINT_ROOT,
        PrintKind::ServerInfo => PRINT_SERVER_INFO,
        PrintKind::Any => PRINT,
    }
}

/// What an expression statically is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// The info struct of the template (`.` at the top).
    Root,
    ServerInfo,
    /// `map[string]string`.
    Tags,
    /// `map[string]interface{}`.
    Fields,
    Str,
    Time,
    Duration,
    Unknown,
}

pub(super) struct Rewriter<'a> {
    scope: Scope,
    html: bool,
    name: &'a str,
    src: &'a str,
    dollar: Ty,
    vars: Vec<(SmolStr, Ty)>,
    /// What `{{template "name" …}}` calls pass, per template name, as
    /// recorded during this pass.
    pub(super) calls: HashMap<String, Option<Ty>>,
    /// What the calls passed in the previous pass: the dots of the defines.
    pub(super) known: HashMap<String, Option<Ty>>,
    /// The first parse-time error (an undefined function), Go's wording.
    pub(super) error: Option<String>,
}

fn call(pos: Pos, func: &str, args: Vec<Expr>) -> Expr {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(Expr::Identifier(pos, SmolStr::from(func)));
    all.extend(args);
    Expr::Pipe(pos, single(pos, all))
}

fn single(pos: Pos, args: Vec<Expr>) -> PipeNode {
    PipeNode {
        pos,
        decl: Vec::new(),
        commands: vec![CommandNode { pos, args }],
        is_assign: false,
    }
}

fn go_struct_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Id => "kapacitor.idInfo",
        Scope::Message => "kapacitor.messageInfo",
        Scope::Details => "kapacitor.detailsInfo",
        Scope::Handler => "kapacitor.handlerInfo",
    }
}

impl<'a> Rewriter<'a> {
    pub(super) fn new(scope: Scope, html: bool, name: &'a str, src: &'a str) -> Self {
        Rewriter {
            scope,
            html,
            name,
            src,
            dollar: Ty::Root,
            vars: Vec::new(),
            calls: HashMap::new(),
            known: HashMap::new(),
            error: None,
        }
    }

    /// Rewrites the main tree (dot and `$` are the info struct).
    pub(super) fn main(&mut self, list: &ListNode) -> ListNode {
        self.dollar = Ty::Root;
        self.vars.clear();
        self.list(list, Ty::Root)
    }

    /// Rewrites a `{{define}}`d template. Its dot (and `$`) is what its
    /// `{{template}}` calls pass, when every call seen so far passes the same
    /// kind of value; unknown otherwise.
    pub(super) fn define(&mut self, name: &str, list: &ListNode) -> ListNode {
        let dot = self
            .known
            .get(name)
            .copied()
            .flatten()
            .unwrap_or(Ty::Unknown);
        self.dollar = dot;
        self.vars.clear();
        self.list(list, dot)
    }

    fn list(&mut self, list: &ListNode, dot: Ty) -> ListNode {
        ListNode {
            pos: list.pos,
            nodes: list.nodes.iter().map(|n| self.node(n, dot)).collect(),
        }
    }

    fn node(&mut self, node: &Node, dot: Ty) -> Node {
        match node {
            Node::Action(a) => Node::Action(self.action(a, dot)),
            Node::If(b) => {
                let mark = self.vars.len();
                let (pipe, _) = self.pipe(&b.pipe, dot);
                let out = self.branch(b, pipe, dot, dot);
                self.vars.truncate(mark);
                Node::If(out)
            }
            Node::With(b) => {
                let mark = self.vars.len();
                let (pipe, ty) = self.pipe(&b.pipe, dot);
                self.declare(&pipe, ty);
                let out = self.branch(b, pipe, ty, dot);
                self.vars.truncate(mark);
                Node::With(out)
            }
            Node::Range(b) => {
                let mark = self.vars.len();
                let (mut pipe, ty) = self.pipe(&b.pipe, dot);
                let (key, elem) = match ty {
                    Ty::Tags => (Ty::Str, Ty::Str),
                    Ty::Fields => (Ty::Str, Ty::Unknown),
                    Ty::Root | Ty::ServerInfo => {
                        let what = if ty == Ty::Root {
                            go_struct_name(self.scope)
                        } else {
                            "kapacitor.serverInfo"
                        };
                        let msg = self.exec_error(
                            b.pipe.pos,
                            "range",
                            &format!("range can't iterate over {{{what}}}"),
                        );
                        pipe = PipeNode {
                            commands: vec![fail_cmd(b.pipe.pos, msg)],
                            ..pipe
                        };
                        (Ty::Unknown, Ty::Unknown)
                    }
                    _ => (Ty::Unknown, Ty::Unknown),
                };
                match pipe.decl.len() {
                    1 => self.vars.push((pipe.decl[0].clone(), elem)),
                    2 => {
                        self.vars.push((pipe.decl[0].clone(), key));
                        self.vars.push((pipe.decl[1].clone(), elem));
                    }
                    _ => {}
                }
                let out = self.branch(b, pipe, elem, dot);
                self.vars.truncate(mark);
                Node::Range(out)
            }
            Node::Template(t) => {
                let pipe = t.pipe.as_ref().map(|p| self.pipe(p, dot));
                // Without a pipeline the called template's dot is nil.
                let passed = pipe.as_ref().map_or(Ty::Unknown, |p| p.1);
                let slot = self.calls.entry(t.name.to_string()).or_insert(Some(passed));
                if *slot != Some(passed) {
                    *slot = Some(Ty::Unknown);
                }
                Node::Template(TemplateNode {
                    pos: t.pos,
                    name: t.name.clone(),
                    pipe: pipe.map(|p| p.0),
                })
            }
            Node::List(l) => Node::List(self.list(l, dot)),
            other => other.clone(),
        }
    }

    fn branch(&mut self, b: &BranchNode, pipe: PipeNode, body_dot: Ty, else_dot: Ty) -> BranchNode {
        let mark = self.vars.len();
        let body = self.list(&b.body, body_dot);
        self.vars.truncate(mark);
        let else_body = b.else_body.as_ref().map(|e| self.list(e, else_dot));
        self.vars.truncate(mark);
        BranchNode {
            pos: b.pos,
            pipe,
            body,
            else_body,
        }
    }

    fn declare(&mut self, pipe: &PipeNode, ty: Ty) {
        let Some(var) = pipe.decl.first() else { return };
        if pipe.is_assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == var)
                && slot.1 != ty
            {
                slot.1 = Ty::Unknown;
            }
        } else {
            self.vars.push((var.clone(), ty));
        }
    }

    fn action(&mut self, a: &ActionNode, dot: Ty) -> ActionNode {
        let (pipe, ty) = self.pipe(&a.pipe, dot);
        if !pipe.decl.is_empty() {
            self.declare(&pipe, ty);
            return ActionNode { pos: a.pos, pipe };
        }
        // Calls whose result Go and gotmpl print alike (strings, bools, ints)
        // need no printing step; keeping `html`/`urlquery` last also keeps
        // html/template's rule on predefined escapers.
        let returns_text = pipe
            .commands
            .last()
            .and_then(|c| c.args.first())
            .is_some_and(|e| {
                matches!(e, Expr::Identifier(_, f) if matches!(f.as_str(),
                "print" | "printf" | "println" | "html" | "js" | "urlquery" | "len" | "not"
                | "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "json" | "jsonCompact" | INDEX_STR)
                || f.starts_with("__kp_json"))
            });
        if returns_text {
            return ActionNode { pos: a.pos, pipe };
        }
        let pos = pipe.pos;
        let func = match self.print_kind(ty) {
            // See value::print_html_func.
            PrintKind::Any if self.html => PRINT_HTML,
            kind => print_name(kind),
        };
        let inner = Expr::Pipe(pos, pipe);
        ActionNode {
            pos: a.pos,
            pipe: single(pos, vec![Expr::Identifier(pos, SmolStr::from(func)), inner]),
        }
    }

    fn print_kind(&self, ty: Ty) -> PrintKind {
        match ty {
            Ty::Root => PrintKind::Root(self.scope),
            Ty::ServerInfo => PrintKind::ServerInfo,
            _ => PrintKind::Any,
        }
    }

    /// Rewrites a pipeline into a single command (flattened) and types it.
    fn pipe(&mut self, pipe: &PipeNode, dot: Ty) -> (PipeNode, Ty) {
        let mut prev: Option<(Expr, Ty)> = None;
        let mut last: Option<(Vec<Expr>, Ty, Pos)> = None;
        for cmd in &pipe.commands {
            if let Some((args, ty, pos)) = last.take() {
                prev = Some((Expr::Pipe(pos, single(pos, args)), ty));
            }
            let (args, ty) = self.command(cmd, dot, prev.take());
            last = Some((args, ty, cmd.pos));
        }
        match last {
            Some((args, ty, pos)) => (
                PipeNode {
                    pos: pipe.pos,
                    decl: pipe.decl.clone(),
                    commands: vec![CommandNode { pos, args }],
                    is_assign: pipe.is_assign,
                },
                ty,
            ),
            None => (pipe.clone(), Ty::Unknown),
        }
    }

    /// A printable form of a struct-typed argument (Go would format the
    /// struct where gotmpl would format a map).
    fn stringify_struct(&self, pos: Pos, e: Expr, ty: Ty) -> Expr {
        match ty {
            Ty::Root | Ty::ServerInfo => call(pos, print_name(self.print_kind(ty)), vec![e]),
            _ => e,
        }
    }

    fn command(
        &mut self,
        cmd: &CommandNode,
        dot: Ty,
        piped: Option<(Expr, Ty)>,
    ) -> (Vec<Expr>, Ty) {
        let Some(first) = cmd.args.first() else {
            return (cmd.args.clone(), Ty::Unknown);
        };
        let Expr::Identifier(fpos, fname) = first else {
            let mut rest: Vec<Expr> = cmd.args[1..].iter().map(|a| self.expr(a, dot).0).collect();
            rest.extend(piped.map(|p| p.0));
            let mut args = Some(rest);
            let (head, ty) = self.chain(first, dot, &mut args);
            let mut out = vec![head];
            out.extend(args.unwrap_or_default());
            return (out, ty);
        };
        let (fpos, fname) = (*fpos, fname.as_str());
        self.check_function(fpos, fname);
        let mut args: Vec<(Expr, Ty)> = cmd.args[1..].iter().map(|a| self.expr(a, dot)).collect();
        let was_piped = piped.is_some();
        args.extend(piped);
        let pos = cmd.pos;
        let mut name = fname;
        let (out_args, ty): (Vec<Expr>, Ty) = match fname {
            "index" => {
                let ty = match (args.first().map(|a| a.1), args.len()) {
                    (Some(Ty::Tags), 2) => {
                        name = INDEX_STR;
                        Ty::Str
                    }
                    _ => Ty::Unknown,
                };
                (args.into_iter().map(|a| a.0).collect(), ty)
            }
            "json" | "jsonCompact" if self.html && args.len() == 1 => {
                let kind = match args[0].1 {
                    Ty::Root => JsonKind::Root(self.scope),
                    Ty::ServerInfo => JsonKind::ServerInfo,
                    Ty::Time => JsonKind::Time,
                    Ty::Duration => JsonKind::Duration,
                    _ => JsonKind::Any,
                };
                name = json_name(kind, fname == "jsonCompact");
                (args.into_iter().map(|a| a.0).collect(), Ty::Str)
            }
            "printf" if !args.is_empty() => {
                let mut it = args.into_iter();
                let (format, _) = it.next().unwrap_or((Expr::Nil(pos), Ty::Unknown));
                let mut out = vec![format.clone()];
                for (i, (e, ty)) in it.enumerate() {
                    let e = self.stringify_struct(pos, e, ty);
                    out.push(call(
                        pos,
                        PRINTF_ARG,
                        vec![
                            format.clone(),
                            Expr::Number(pos, Number::Int(i as i64 + 1)),
                            e,
                        ],
                    ));
                }
                (out, Ty::Str)
            }
            "print" | "println" => (
                args.into_iter()
                    .map(|(e, ty)| self.stringify_struct(pos, e, ty))
                    .collect(),
                Ty::Str,
            ),
            "html" | "js" | "urlquery" => {
                // See value::go_v_func for why the form matters.
                let helper = if self.html && fname != "js" && !was_piped {
                    GO_V_NIL
                } else {
                    GO_V
                };
                (
                    args.into_iter()
                        .map(|(e, ty)| match ty {
                            Ty::Root | Ty::ServerInfo => self.stringify_struct(pos, e, ty),
                            _ => call(pos, helper, vec![e]),
                        })
                        .collect(),
                    Ty::Str,
                )
            }
            _ => (args.into_iter().map(|a| a.0).collect(), Ty::Unknown),
        };
        let mut all = Vec::with_capacity(out_args.len() + 1);
        all.push(Expr::Identifier(fpos, SmolStr::from(name)));
        all.extend(out_args);
        (all, ty)
    }

    fn check_function(&mut self, pos: Pos, name: &str) {
        let known =
            BUILTINS.contains(&name) || (self.html && (name == "json" || name == "jsonCompact"));
        if !known && self.error.is_none() {
            self.error = Some(format!(
                "template: {}:{}: function {:?} not defined",
                self.name, pos.line, name
            ));
        }
    }

    fn expr(&mut self, e: &Expr, dot: Ty) -> (Expr, Ty) {
        match e {
            Expr::Dot(_) => (e.clone(), dot),
            Expr::Field(..) | Expr::Variable(..) | Expr::Chain(..) => self.chain(e, dot, &mut None),
            Expr::Pipe(pos, p) => {
                let (p, ty) = self.pipe(p, dot);
                (Expr::Pipe(*pos, p), ty)
            }
            Expr::Identifier(pos, name) => {
                self.check_function(*pos, name);
                (e.clone(), Ty::Unknown)
            }
            Expr::String(..) => (e.clone(), Ty::Str),
            _ => (e.clone(), Ty::Unknown),
        }
    }

    /// A field chain (`.A.B`, `$x.A`, `(pipe).A`), with Go's method calls on
    /// `.Time` and `.Duration` turned into helper calls. `args` are the
    /// arguments of the command when the chain is its head: the last method
    /// takes them (`.Time.Format "15:04"`); they are left in place otherwise.
    fn chain(&mut self, e: &Expr, dot: Ty, args: &mut Option<Vec<Expr>>) -> (Expr, Ty) {
        let (pos, head, names, mut cur, mut ty): (Pos, &str, &[SmolStr], Expr, Ty) = match e {
            Expr::Field(pos, names) => (*pos, "", names, Expr::Dot(*pos), dot),
            Expr::Variable(pos, var, names) => {
                let base = if var.as_str() == "$" {
                    self.dollar
                } else {
                    self.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == var)
                        .map_or(Ty::Unknown, |v| v.1)
                };
                (
                    *pos,
                    var.as_str(),
                    names,
                    Expr::Variable(*pos, var.clone(), Vec::new()),
                    base,
                )
            }
            Expr::Chain(pos, inner, names) => {
                let (inner, base) = self.expr(inner, dot);
                (*pos, "(…)", names, inner, base)
            }
            other => return self.expr(other, dot),
        };
        let mut pending: Vec<SmolStr> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let method = match ty {
                Ty::Time => time_method(n),
                Ty::Duration => duration_method(n),
                _ => None,
            };
            if let Some((helper, result)) = method {
                let target = materialize(pos, cur, std::mem::take(&mut pending));
                let mut call_args = vec![Expr::String(pos, Arc::from(n.as_str())), target];
                if i + 1 == names.len() {
                    call_args.extend(args.take().unwrap_or_default());
                }
                cur = call(pos, helper, call_args);
                ty = result;
                continue;
            }
            match self.field(ty, n) {
                Ok(t) => {
                    pending.push(n.clone());
                    ty = t;
                }
                Err(msg) => return (self.fail_expr(pos, head, names, i, &msg), Ty::Unknown),
            }
        }
        (materialize(pos, cur, pending), ty)
    }

    fn field(&self, ty: Ty, n: &str) -> Result<Ty, String> {
        let scope = self.scope;
        let no_field = |t: &str| Err(format!("can't evaluate field {n} in type {t}"));
        match ty {
            Ty::Root => match n {
                "Name" | "TaskName" | "Group" => Ok(Ty::Str),
                "Tags" => Ok(Ty::Tags),
                "ServerInfo" => Ok(Ty::ServerInfo),
                "ID" | "Level" if scope >= Scope::Message => Ok(Ty::Str),
                "Fields" if scope >= Scope::Message => Ok(Ty::Fields),
                "Time" if scope >= Scope::Message => Ok(Ty::Time),
                "Duration" if scope >= Scope::Message => Ok(Ty::Duration),
                "Message" if scope >= Scope::Details => Ok(Ty::Str),
                "Details" if scope >= Scope::Handler => Ok(Ty::Str),
                _ => no_field(go_struct_name(scope)),
            },
            Ty::ServerInfo => match n {
                "Hostname" | "ClusterID" | "ServerID" => Ok(Ty::Str),
                _ => no_field("kapacitor.serverInfo"),
            },
            Ty::Tags => Ok(Ty::Str),
            Ty::Fields | Ty::Unknown => Ok(Ty::Unknown),
            Ty::Str => no_field("string"),
            Ty::Time => Err(format!("can't evaluate field {n} in type time.Time")),
            Ty::Duration => Err(format!("can't evaluate field {n} in type time.Duration")),
        }
    }

    /// An expression that fails at execution with Go's message and position
    /// (Go reports the position of the failing field).
    fn fail_expr(
        &self,
        pos: Pos,
        head: &str,
        names: &[SmolStr],
        failing: usize,
        msg: &str,
    ) -> Expr {
        let text: String = std::iter::once(head.to_owned())
            .chain(names.iter().map(|n| format!(".{n}")))
            .collect();
        let skip: usize = head.len() + names[..failing].iter().map(|n| n.len() + 1).sum::<usize>();
        let at = Pos {
            offset: pos.offset + skip,
            line: pos.line,
        };
        let full = self.exec_error(at, &text, msg);
        Expr::Pipe(
            pos,
            PipeNode {
                pos,
                decl: Vec::new(),
                commands: vec![fail_cmd(pos, full)],
                is_assign: false,
            },
        )
    }

    /// Go's execution error text: `template: NAME:LINE:COL: executing "NAME" at <EXPR>: MSG`.
    fn exec_error(&self, pos: Pos, expr: &str, msg: &str) -> String {
        let mut offset = pos.offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_start = self.src[..offset].rfind('\n').map_or(0, |i| i + 1);
        let col = offset - line_start;
        format!(
            "template: {n}:{}:{col}: executing {n:?} at <{expr}>: {msg}",
            pos.line,
            n = self.name
        )
    }
}

/// `base` followed by the field names `names` (as the parser would write it).
fn materialize(pos: Pos, base: Expr, names: Vec<SmolStr>) -> Expr {
    if names.is_empty() {
        return base;
    }
    match base {
        Expr::Dot(_) => Expr::Field(pos, names),
        Expr::Variable(p, var, mut fields) => {
            fields.extend(names);
            Expr::Variable(p, var, fields)
        }
        other => Expr::Chain(pos, Box::new(other), names),
    }
}

/// `time.Time` methods templates may call: (helper, result type).
fn time_method(name: &str) -> Option<(&'static str, Ty)> {
    match name {
        "Format" | "String" | "Month" | "Weekday" => Some((TIME_METHOD, Ty::Str)),
        "UTC" => Some((TIME_METHOD, Ty::Time)),
        "Unix" | "UnixNano" | "UnixMilli" | "UnixMicro" | "Year" | "Day" | "Hour" | "Minute"
        | "Second" | "Nanosecond" | "YearDay" => Some((TIME_METHOD, Ty::Unknown)),
        _ => None,
    }
}

/// `time.Duration` methods templates may call.
fn duration_method(name: &str) -> Option<(&'static str, Ty)> {
    match name {
        "String" => Some((DURATION_METHOD, Ty::Str)),
        "Seconds" | "Minutes" | "Hours" | "Nanoseconds" | "Microseconds" | "Milliseconds" => {
            Some((DURATION_METHOD, Ty::Unknown))
        }
        _ => None,
    }
}

fn fail_cmd(pos: Pos, msg: String) -> CommandNode {
    CommandNode {
        pos,
        args: vec![
            Expr::Identifier(pos, SmolStr::from(FAIL)),
            Expr::String(pos, Arc::from(msg)),
        ],
    }
}
