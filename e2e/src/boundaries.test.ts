// The tree's rules, checked on every run: libs never import apps, apps never
// import other apps (the daemon is the one composition root), nobody reaches
// into another package's src/ or dist/, and generated code is not in git.
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '@agent/testkit';

interface Pkg {
  readonly name: string;
  readonly dir: string;
  readonly tag: string;
}

function packages(): Pkg[] {
  const out: Pkg[] = [];
  for (const group of ['proto', 'libs', 'apps', 'tools', 'e2e', 'bench']) {
    const base = path.join(ROOT, group);
    const dirs = fs.existsSync(path.join(base, 'package.json')) ? [base] : fs.readdirSync(base).map((d) => path.join(base, d));
    for (const dir of dirs) {
      const pj = path.join(dir, 'package.json');
      if (!fs.existsSync(pj)) continue;
      const p = JSON.parse(fs.readFileSync(pj, 'utf8')) as { name: string; nx?: { tags?: string[] } };
      out.push({ name: p.name, dir, tag: p.nx?.tags?.[0] ?? '' });
    }
  }
  return out;
}

function sources(dir: string): string[] {
  const src = path.join(dir, 'src');
  if (!fs.existsSync(src)) return [];
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && e.name !== 'gen') walk(p);
      else if (e.isFile() && p.endsWith('.ts')) out.push(p);
    }
  };
  walk(src);
  return out;
}

/** Which tags a package of each tag may import. */
const ALLOWED: Record<string, readonly string[]> = {
  'type:lib': ['type:lib'],
  'type:app': ['type:lib'],
  'type:daemon': ['type:lib', 'type:app'],
  'type:tool': ['type:lib'],
  'type:test': ['type:lib'],
  'type:bench': ['type:lib', 'type:app'],
};

describe('module boundaries', () => {
  const pkgs = packages();
  const byName = new Map(pkgs.map((p) => [p.name, p]));

  it('every package is tagged', () => {
    for (const p of pkgs) assert.ok(ALLOWED[p.tag], `${p.name} has no known nx tag`);
  });

  for (const p of pkgs) {
    it(`${p.name} imports only what its tag allows, through barrels`, () => {
      for (const file of sources(p.dir)) {
        const text = fs.readFileSync(file, 'utf8');
        for (const m of text.matchAll(/from '(@agent\/[^']+)'|import\('(@agent\/[^']+)'\)/g)) {
          const spec = (m[1] ?? m[2])!;
          const [scope, name, ...rest] = spec.split('/');
          assert.equal(rest.length, 0, `${path.relative(ROOT, file)} deep-imports ${spec}`);
          const target = byName.get(`${scope}/${name}`);
          assert.ok(target, `${path.relative(ROOT, file)} imports unknown ${spec}`);
          assert.ok(ALLOWED[p.tag]!.includes(target.tag), `${p.name} (${p.tag}) must not import ${target.name} (${target.tag})`);
        }
        for (const m of text.matchAll(/from '(\.\.\/[^']*)'/g)) {
          const resolved = path.resolve(path.dirname(file), m[1]!);
          assert.ok(resolved.startsWith(path.join(p.dir, 'src')), `${path.relative(ROOT, file)} reaches outside its package: ${m[1]}`);
        }
      }
    });
  }

  it('generated code is not committed', () => {
    const tracked = execFileSync('git', ['ls-files', 'proto/src/gen'], { cwd: ROOT, encoding: 'utf8' }).trim();
    assert.equal(tracked, '');
  });

  it('object kinds are read from the registry (libs/kinds): no switch over them, none named elsewhere', () => {
    for (const p of pkgs.filter((x) => (x.tag === 'type:app' || x.tag === 'type:daemon' || x.tag === 'type:lib') && x.name !== '@agent/kinds')) {
      for (const file of sources(p.dir).filter((f) => !f.endsWith('.test.ts'))) {
        const text = fs.readFileSync(file, 'utf8');
        const where = path.relative(ROOT, file);
        assert.doesNotMatch(text, /\bcase\s+(\w+\.)*Kind\.KIND_/, `${where} switches over object kinds; read the kind's row in the kinds registry`);
        assert.doesNotMatch(text, /\bKind\.KIND_(?!UNSPECIFIED\b)[A-Z]/, `${where} names a kind; read its row in the kinds registry`);
      }
    }
  });

  it('module and driver names are not loose strings in the services', () => {
    for (const p of pkgs.filter((x) => x.tag === 'type:app' || x.tag === 'type:daemon')) {
      for (const file of sources(p.dir)) {
        const text = fs.readFileSync(file, 'utf8');
        assert.doesNotMatch(text, /['"]agent\.(v1|internal\.v1)\.[A-Z]\w+['"]/, `${path.relative(ROOT, file)} spells a service name; use GrpcService`);
        assert.doesNotMatch(text, /\.name === '(docker|process|cgroup|rpc)'/, `${path.relative(ROOT, file)} compares a driver name to a string; use Driver`);
        assert.doesNotMatch(text, /new Logger\('/, `${path.relative(ROOT, file)} names its module with a string; use Module`);
      }
    }
  });
});
