"""pycparser's C parser with the GNU C that kernel code uses and pycparser
3.0 / pycparserext 2026.1 do not parse (each override says what it adds)."""
from __future__ import annotations

from pycparser import c_ast
from pycparserext.ext_c_parser import GnuCParser


class CParser(GnuCParser):
    """pycparserext's GNU C, with statement expressions as operands.

    pycparser 3.0 takes an assignment expression that starts with `({` to be
    the statement expression alone, so `({ ... }) + x` and
    `PV_CALL0(...) * k` fail at the operator. pycparserext already parses
    `({ ... })` as a primary expression, which is where gcc has it: leave it
    there and parse the rest of the expression as usual."""

    def _parse_assignment_expression(self):
        expr = self._parse_conditional_expression()
        if self._is_assignment_op():
            op = self._advance().value
            return c_ast.Assignment(op, expr, self._parse_assignment_expression(), expr.coord)
        return expr

    # The GNU C that kernel code uses and pycparser 3.0 / pycparserext 2026.1
    # do not parse: `x ?: y`, `&&label` and `goto *p`, `__extension__`,
    # `__real__`/`__imag__` in expressions, and C11 `_Generic`.

    def _parse_conditional_expression(self):
        expr = self._parse_binary_expression()
        if not self._accept("CONDOP"):
            return expr
        iftrue = None if self._peek_type() == "COLON" else self._parse_expression()
        self._expect("COLON")
        return c_ast.TernaryOp(expr, iftrue, self._parse_conditional_expression(), expr.coord)

    def _parse_unary_expression(self):
        tok = self._peek()
        if tok is not None and tok.type == "__EXTENSION__":
            self._advance()
            return self._parse_cast_expression()
        if tok is not None and tok.type in ("__REAL__", "__IMAG__"):
            self._advance()
            return c_ast.UnaryOp(tok.value, self._parse_cast_expression(), self._tok_coord(tok))
        if tok is not None and tok.type == "LAND" and self._peek_type(2) == "ID":
            self._advance()
            label = self._advance()
            return c_ast.UnaryOp("&&", c_ast.ID(label.value, self._tok_coord(label)), self._tok_coord(tok))
        return super()._parse_unary_expression()

    def _parse_primary_expression(self):
        tok = self._peek()
        if tok is not None and tok.type == "ID" and tok.value == "_Generic" and self._peek_type(2) == "LPAREN":
            self._advance()
            self._advance()
            coord = self._tok_coord(tok)
            exprs = [self._parse_assignment_expression()]
            while self._accept("COMMA"):
                if not self._accept("DEFAULT"):
                    self._parse_type_name()
                self._expect("COLON")
                exprs.append(self._parse_assignment_expression())
            self._expect("RPAREN")
            return c_ast.FuncCall(c_ast.ID("_Generic", coord), c_ast.ExprList(exprs, coord), coord)
        return super()._parse_primary_expression()

    def _parse_jump_statement(self):
        if self._peek_type() == "GOTO" and self._peek_type(2) == "TIMES":
            tok = self._advance()
            self._advance()
            target = self._parse_expression()
            self._expect("SEMI")
            return c_ast.Compound([c_ast.UnaryOp("goto *", target, self._tok_coord(tok))],
                                  self._tok_coord(tok))
        return super()._parse_jump_statement()

    # pycparser 3.0 peeks about five times per token through two calls and
    # a refill check; read its buffer directly when the token is there.
    def _peek(self, k: int = 1):
        ts = self._tokens
        j = ts._index + k - 1
        buf = ts._buffer
        if k > 0 and j < len(buf):
            return buf[j]
        return ts.peek(k)

    def _peek_type(self, k: int = 1):
        tok = self._peek(k)
        return tok.type if tok is not None else None

    def _parse_error(self, msg, coord):
        # pycparser names only the file for some errors: point at the token.
        tok = self._peek() if not hasattr(coord, "line") else None
        super()._parse_error(msg, self._tok_coord(tok) if tok is not None else coord)
