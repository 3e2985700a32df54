"""Character entities of EPO's `docdb-entities.dtd` (the ISO 8879 sets plus DOCDB's own all-capitals
names) whose value differs from the HTML5 entity of the same name, or that HTML5 lacks. DOCDB files
reference this DTD without shipping it, and the importer never reads a DTD, so the names are listed
here (name:hex code points). DOCDB's capitals are not consistent: `&SACUTE;` is 'Ś' but `&EACUTE;` is
'é'. Names not listed resolve as HTML5 entities.

Example:
    >>> DOCDB_ENTITIES["SACUTE"], DOCDB_ENTITIES["EACUTE"], DOCDB_ENTITIES["agr"]
    ('Ś', 'é', 'α')
"""

from __future__ import annotations

_TABLE = """
AACUTE:e1 ABREVE:102 ACIRC:e2 ACUTE:b4 ACY:410 AELIG:e6 AGR:391 AGRAVE:e0 ALPHA:391 AMACR:100 ANGST:212b
AOGON:104 APOS:27 ARING:c5 ATILDE:e3 AUML:e4 Aacgr:386 Agr:391 BETA:392 BGR:392 BREVE:2d8 BULL:2022
Bgr:392 Brketclosest:e00f Brketopenst:e00e CACUTE:106 CCARON:10c CCEDIL:c7 CDOT:10a CEDIL:b8 CHCY:427
CHECK:2713 CIRC:5e Check:2713 DEG:b0 Dgr:394 Dotlhalfcircle:e002 Dotrhalfcircle:e003 Dotthalfcircle:e001
DoubleLongLeftArrow:f579 DoubleLongLeftRightArrow:f57b DoubleLongRightArrow:f57a EACUTE:e9 ECARON:11a
ECIRC:ca EDOT:116 EEGR:397 EEacgr:389 EEgr:397 EGRAVE:e8 EMACR:112 EMSP13:2004 EMSP14:2005 EMSP:2003
ENSP:2002 EOGON:118 EUML:eb EXCL:21 Eacgr:388 Egr:395 EmptySmallSquare:25fd EmptyVerySmallSquare:f59c
FilledSmallSquare:25fe FilledVerySmallSquare:f59b GBREVE:11e GCY:413 Ggr:393 Hat:302 IACUTE:ed ICIRC:ee
ICY:418 IDOT:130 IECY:415 IEXCL:a1 IOCY:401 IQUEST:bf IUKCY:406 IUML:cf Iacgr:38a Idigr:3aa Igr:399
InvisibleComma:200b JCY:419 KCY:41a KGR:39a KHGR:3a7 KHgr:3a7 Kgr:39a LAMBDA:39b LAQUO:ab LCY:41b
LDQUO:201c LE:2264 LSQB:5b LSQUO:2018 LSTROK:141 Lang:300a LeftAngleBracket:2329 LeftBracketingBar:f603
LeftDoubleBracket:301a Lgr:39b Lhalfcircle:e005 Linevertsplit:e00b LongLeftArrow:f576
LongLeftRightArrow:f578 LongRightArrow:f577 Longleftarrow:f579 Longleftrightarrow:f57b
Longrightarrow:f57a MACR:af MCY:41c MDASH:2014 MGR:39c MIDDOT:b7 MINUS:2212 MLDR:2026 Mgr:39c Mldr:2026
NACUTE:143 NBSP:a0 NCARON:147 NCY:41d NDASH:2013 NTILDE:f1 NUMERO:2116 NegativeMediumSpace:205f+fe00
NegativeThickSpace:2005+fe00 NegativeThinSpace:2009+fe00 NegativeVeryThinSpace:200a+fe00 Ngr:39d
NoBreak:feff NotGreaterEqual:2271+20e5 NotGreaterFullEqual:2270 NotGreaterGreater:226b+338+fe00
NotGreaterSlantEqual:2271 NotLessEqual:2270+20e5 NotLessLess:226a+338+fe00 NotLessSlantEqual:2270
NotNestedGreaterGreater:24a2+338 NotNestedLessLess:24a1+338 NotSubset:2284 NotSuperset:2285 OACGR:38c
OACUTE:d3 OCIRC:f4 OCY:41e ODBLAC:151 OELIG:152 OGR:39f OGRAVE:d2 OHacgr:38f OHgr:3a9 OMACR:14c
OMEGA:3a9 OSLASH:d8 OTILDE:d5 OUML:f6 Oacgr:38c Ogr:39f Ovalhollow:e008 Ovalsolid:e00a OverBar:af
OverBrace:fe37 OverParenthesis:fe35 PARA:b6 PCY:41f PGR:3a0 PHGR:3a6 PHI:3a6 PHIV:3d5 PHgr:3a6
PRIME:2032 PSgr:3a8 Parenclosest:e00d Parenopenst:e00c Pgr:3a0 Quadbond:e006 RACUTE:154 RADIC:221a
RAQUO:bb RARR:21a0 RCARON:158 RCY:420 RDQUO:201d RSQB:5d RSQUO:2019 Rang:300b Rgr:3a1 Rhalfcircle:e007
RightAngleBracket:232a RightBracketingBar:f604 RightDoubleBracket:301b SACUTE:15a SCARON:160 SCEDIL:15e
SCY:421 SHCY:428 SHY:ad SOFTCY:42c SOL:2f STAR:22c6 STARF:2605 SUM:2211 SZLIG:df Sgr:3a3
ShortDownArrow:2304+fe00 ShortLeftArrow:2190+fe00 ShortRightArrow:2192+fe00 ShortUpArrow:2303+fe00
SucceedsEqual:227d TCEDIL:162 TCY:422 THETA:398 THETAS:3b8 THgr:398 Tau:3c4 Tgr:3a4
ThickSpace:2009+200a+200a Trade:2122 UACUTE:da UCIRC:db UDBLAC:170 UMACR:16a UOGON:172 UPSI:3d2
URING:16e UUML:fc Uacgr:38e Udigr:3ab Ugr:3a5 UnderBar:332 UnderBrace:fe38 UnderParenthesis:fe36
Upsilon:3d2 VCY:412 Xgr:39e YACUTE:dd YACY:42f YUCY:42e YUML:178 ZACUTE:179 ZCARON:17d ZDOT:17b Zgr:396
aacgr:3ac ac:290f acE:29db agr:3b1 angrtvb:299d+fe00 angst:212b apE:224a asymp:224d b.Delta:1d6ab
b.Gamma:1d6aa b.Gammad:3dc b.Lambda:1d6b2 b.Omega:1d6c0 b.Phi:1d6bd b.Pi:1d6b7 b.Psi:1d6bf b.Sigma:1d6ba
b.Theta:1d6af b.Upsi:1d6bc b.Xi:1d6b5 b.alpha:1d6c2 b.beta:1d6c3 b.chi:1d6d8 b.delta:1d6c5 b.epsi:1d6c6
b.epsiv:1d6dc b.eta:1d6c8 b.gamma:1d6c4 b.gammad:3dd b.iota:1d6ca b.kappa:1d6cb b.kappav:1d6de
b.lambda:1d6cc b.mu:1d6cd b.nu:1d6ce b.omega:1d6da b.phi:1d6d7 b.phiv:1d6df b.pi:1d6d1 b.piv:1d6e1
b.psi:1d6d9 b.rho:1d6d2 b.rhov:1d6e0 b.sigma:1d6d4 b.sigmav:1d6d3 b.tau:1d6d5 b.thetas:1d6c9
b.thetav:1d6dd b.upsi:1d6d6 b.xi:1d6cf b.zeta:1d6c7 barwed:22bc barwedge:22bc bgr:3b2 bigodot:2299
bigoplus:2295 bigotimes:2297 bigsqcup:2294 biguplus:228e bsolhsub:5c+2282 circ:5e circlef:25cf degree:b0
dgr:3b4 digamma:3dc dzigrarr:f5a2 eacgr:3ad easter:225b eeacgr:3ae eegr:3b7 efdot:2252 egr:3b5 egs:22dd
els:22dc empty:2205+fe00 emptyset:2205+fe00 epsiv:25b eqslantgtr:22dd eqslantless:22dc gEl:22db
gammad:3dc gap:2273 ggr:3b3 gne:2269 gneq:2269 gtrapprox:2273 gtreqqless:22db hbar:210f+fe00
heartsuit:2661 iacgr:3af ic:200b idiagr:390 idigr:3ca igr:3b9 imped:1d543 jmath:6a+fe00 kgr:3ba khgr:3c7
lEg:22da lang:2329 langle:2329 lap:2272 lbbrk:3014 lessapprox:2272 lesseqqgtr:22da lgr:3bb litre:2113
lne:2268 lneq:2268 loang:f558 lobrk:301a longleftarrow:f576 longleftrightarrow:f578 longmapsto:f57d
longrightarrow:f577 lopar:3018 lparstr:2032 lscr:2113 mgr:3bc nGt:226b+338 nGtv:226b+338+fe00
nLt:226a+338 nLtv:226a+338+fe00 nang:2220+338 nedot:2260+fe00 newline:a ngE:2271 nge:2271+20e5
ngeq:2271+20e5 ngeqq:2271 ngeqslant:2271 nges:2271 ngr:3bd nlE:2270 nle:2270+20e5 nleq:2270+20e5
nleqq:2270 nleqslant:2270 nles:2270 notindot:22f6+fe00 notinva:2209+338 nparsl:2225+fe00+20e5
nshortmid:2224+fe00 nshortparallel:2226+fe00 nsmid:2224+fe00 nspar:2226+fe00 nsubE:2288 nsubset:2284
nsubseteqq:2288 nsupE:2289 nsupset:2285 nsupseteqq:2289 nvHarr:21ce nvap:2249+338 nvge:2271 nvgt:226f
nvlArr:21cd nvle:2270 nvlt:226e nvltrie:22ec+338 nvrArr:21cf nvrtrie:22ed+338 nvsim:2241+338 oacgr:3cc
ogr:3bf ohacgr:3ce ohgr:3c9 ohm:2126 parsl:2225+fe00 percent:25 pgr:3c0 phgr:3c6 phis:3c6
planck:210f+fe00 prE:2aaf prap:227e precapprox:227e precnapprox:22e8 prnap:22e8 psgr:3c8 race:29da
rang:232a rangle:232a ratail:21a3 rbbrk:3015 rgr:3c1 rlarr2:21c4 roang:f559 robrk:301b ropar:3019
rparstr:2036 scE:227e scap:227f sce:227d scnap:22e9 sfgr:3c2 sgr:3c3 shortmid:2223+fe00
shortparallel:2225+fe00 sl0:d8 slarr:2190+fe00 smallsetminus:2216+fe00 smid:2223+fe00 spar:2225+fe00
srarr:2192+fe00 ssetmn:2216+fe00 star:22c6 straightepsilon:3b5 straightphi:3c6 subE:2286 subnE:228a
subseteqq:2286 subsetneqq:228a succapprox:227f succeq:227d succnapprox:22e9 supE:2287 suphsol:2283+2f
supl:b9 supnE:228b supseteqq:2287 supsetneqq:228b tgr:3c4 thetas:3b8 thgr:3b8 thickapprox:2248+fe00
thicksim:223c+fe00 thkap:2248+fe00 thksim:223c+fe00 uacgr:3cd udiagr:3b0 udigr:3cb ugr:3c5 vangrt:22be
varepsilon:25b varsubsetneqq:228a+fe00 varsupsetneqq:228b+fe00 vnsub:2284 vnsup:2285 vsubnE:228a+fe00
vsupnE:228b+fe00 xgr:3be xhArr:f57b xharr:f578 xlArr:f579 xlarr:f576 xmap:f57d xodot:2299 xoplus:2295
xotime:2297 xrArr:f57a xrarr:f577 xsqcup:2294 xuplus:228e zgr:3b6
"""

DOCDB_ENTITIES: dict[str, str] = {
    name: "".join(chr(int(code, 16)) for code in codes.split("+"))
    for name, _, codes in (item.partition(":") for item in _TABLE.split())
}
