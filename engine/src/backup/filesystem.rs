//! Hardlink identities that tell filesystems apart ([`Fs`]) without putting device numbers,
//! which change from one pod to the next, into trees.

/// The filesystem a directory lies on: its device number, which is only compared within one
/// run, and a key derived from where that filesystem was entered, which is stable across runs.
///
/// Hardlink identities must tell apart inodes of different filesystems (two mounts below one
/// folder both have an inode 2) while trees stay free of device numbers, which change from one
/// pod to the next. Inode numbers of the folder's own filesystem are used as they are; those of
/// a filesystem mounted below it are mixed with the path of its mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fs {
    pub(super) dev: u64,
    /// 0 for the filesystem of the top-level folder; otherwise from the mount point's path.
    key: u64,
}

impl Fs {
    pub(super) fn root(dev: u64) -> Fs {
        Fs { dev, key: 0 }
    }

    /// The filesystem of an entry at `rel` whose device is `dev`: this one, or one mounted at
    /// `rel` (a directory mount, or a file bind-mounted over a name).
    pub(super) fn enter(self, dev: u64, rel: &[u8]) -> Fs {
        if dev == self.dev {
            return self;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"cairn hardlink filesystem\0");
        h.update(rel);
        let key = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"));
        Fs { dev, key: key | 1 }
    }

    /// The hardlink identity of inode `ino` on this filesystem.
    pub(super) fn hardlink_id(self, ino: u64) -> u64 {
        if self.key == 0 {
            return ino;
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.key.to_le_bytes());
        h.update(&ino.to_le_bytes());
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"))
    }
}

#[cfg(test)]
mod tests {
    use super::Fs;

    #[test]
    fn hardlink_ids_tell_filesystems_apart_but_not_device_numbers() {
        let folder = Fs::root(40);
        // The folder's own filesystem keeps plain inode numbers (trees of earlier runs stay equal).
        assert_eq!(folder.hardlink_id(2), 2);
        assert_eq!(folder.enter(40, b"notetaking/a"), folder);
        // Two mounts below one folder, both with inode 2: never the same identity.
        let a = folder.enter(41, b"notetaking/a");
        let b = folder.enter(42, b"notetaking/b");
        assert_ne!(a.hardlink_id(2), b.hardlink_id(2));
        assert_ne!(a.hardlink_id(2), folder.hardlink_id(2));
        // The next night's pod numbers the devices differently: same identities.
        let a2 = Fs::root(7).enter(9, b"notetaking/a");
        assert_eq!(a2.hardlink_id(2), a.hardlink_id(2));
        // One mount: one identity per inode.
        assert_eq!(a.hardlink_id(5), a.hardlink_id(5));
        assert_ne!(a.hardlink_id(5), a.hardlink_id(6));
    }
}
