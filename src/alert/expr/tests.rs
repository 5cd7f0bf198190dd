//! Evaluator tests (lexer and parser tests sit beside them).
