import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addMasterKey, openMasterKeyRing, seal, unseal } from '../../src/keyring/master-key.js';
import { tempDir } from '../helpers.js';

describe('the master key ring of a process, with the key file', () => {
  it('seals under the file\'s first key as the file is now, and keeps opening what it loaded before; a broken file changes nothing', () => {
    const file = path.join(tempDir(), 'keys/master.key');
    const ring = openMasterKeyRing({ base64: undefined, file });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const sealedBefore = seal(ring.sealing(), 'before', 'aad');

    // `master-key rotate` from another process: this one seals under the new key from then on.
    const [added, old] = addMasterKey({ base64: undefined, file });
    expect(ring.sealing().id).toBe(added.id);
    expect(ring.sealing().id).not.toBe(old!.id);
    const sealedAfter = seal(ring.sealing(), 'after', 'aad');

    // The old key taken out of the file: this process still opens what it sealed (until a restart)...
    fs.writeFileSync(file, `${fs.readFileSync(file, 'utf8').split('\n')[0]}\n`);
    expect(unseal(ring, sealedBefore, 'aad')).toBe('before');
    // ...a process started now does not, and says which key it would need.
    const fresh = openMasterKeyRing({ base64: undefined, file });
    expect(() => unseal(fresh, sealedBefore, 'aad')).toThrow(`sealed under master key ${old!.id}, but master key ${added.id} was loaded (from ${file})`);
    expect(unseal(fresh, sealedAfter, 'aad')).toBe('after');

    // A file being edited by hand, or gone, leaves the loaded keys as they are.
    fs.writeFileSync(file, 'half a key\n');
    expect(ring.sealing().id).toBe(added.id);
    fs.rmSync(file);
    expect(ring.sealing().id).toBe(added.id);
    expect(unseal(ring, sealedAfter, 'aad')).toBe('after');
    expect(fs.existsSync(file)).toBe(false); // never made anew behind the operator's back
  });

  it('opens only an envelope with the full 16-byte GCM tag and 12-byte IV: a tag cut short, which GCM would check only in part, is refused', () => {
    const ring = openMasterKeyRing({ base64: Buffer.alloc(32, 7).toString('base64'), file: path.join(tempDir(), 'unused.key') });
    const sealed = seal(ring.sealing(), 'a private key', 'acme/kid');
    expect(unseal(ring, sealed, 'acme/kid')).toBe('a private key');
    const [version, id, iv, ciphertext, tag] = sealed.split('.') as [string, string, string, string, string];
    const cut = Buffer.from(tag, 'base64url').subarray(0, 4).toString('base64url');
    expect(() => unseal(ring, [version, id, iv, ciphertext, cut].join('.'), 'acme/kid')).toThrow("not a tokenmint sealed envelope: its IV or tag is not of AES-GCM's full length");
    const longIv = Buffer.concat([Buffer.from(iv, 'base64url'), Buffer.alloc(4)]).toString('base64url');
    expect(() => unseal(ring, [version, id, longIv, ciphertext, tag].join('.'), 'acme/kid')).toThrow("not a tokenmint sealed envelope: its IV or tag is not of AES-GCM's full length");
    expect(() => unseal(ring, sealed, 'other/kid')).toThrow(); // the AAD binds it to its row
  });
});
